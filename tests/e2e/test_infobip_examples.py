"""Every example of Infobip's OMNI failover OpenAPI document, replayed against a real gateway.

``infobip/infobip-omni-failover-openapi.json`` is Infobip's document as published. Every request example
(JSON and XML) is sent as written, with two changes: the scenario key is one this gateway issued, and the
``messageId``s get a suffix per example (the document reuses ``MESSAGE-ID-123-xyz`` for different messages,
which a gateway that remembers message ids rightly refuses). Every response example is compared with what
the gateway answers: the same keys (XML: elements) with the same JSON types, extra keys only where named.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from .conftest import ALADDIN_CONFIG, Gateway, GatewayPool

DOCUMENT: dict[str, Any] = json.loads((Path(__file__).parent / "infobip" / "infobip-omni-failover-openapi.json")
                                      .read_text(encoding="utf-8"))
JSON, XML = "application/json", "application/xml"
#: One step per channel the examples use, so that every example has a step it can be sent on.
ALL_CHANNELS = [{"channel": c, "from": "info@example.com" if c == "EMAIL" else "InfoSender"}
                for c in ("WHATSAPP", "VIBER", "PUSH", "LINE", "VKONTAKTE", "KAKAO_ALIM", "KAKAO_CHINGU",
                          "SMS", "VOICE", "EMAIL")]
#: Keys our answers carry beyond the examples': the new scenario's key (the 201 examples lack it) and the
#: default flag under the old clients' name.
EXTRA_KEYS = {"key", "defaultScenario"}


def _operation(path: str, method: str) -> dict[str, Any]:
    op: dict[str, Any] = DOCUMENT["paths"][path][method]
    return op


def request_examples(path: str, method: str, media: str) -> dict[str, Any]:
    examples: dict[str, Any] = _operation(path, method)["requestBody"]["content"][media]["examples"]
    return {name: e["value"] for name, e in examples.items()}


def response_examples(path: str, method: str, status: str, media: str) -> dict[str, Any]:
    content = _operation(path, method)["responses"][status].get("content", {})
    examples: dict[str, Any] = content.get(media, {}).get("examples", {})
    return {name: e["value"] for name, e in examples.items()}


def _all_request_examples() -> list[tuple[str, str, str, str]]:
    cases = []
    for path, item in DOCUMENT["paths"].items():
        for method, op in item.items():
            for media in op.get("requestBody", {}).get("content", {}):
                for name in op["requestBody"]["content"][media].get("examples", {}):
                    cases.append((path, method, media, name))
    return cases


REQUEST_CASES = _all_request_examples()


# --- shapes ------------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def assert_same_shape(example: Any, ours: Any, where: str = "$") -> None:
    """``ours`` has every key of ``example`` with the same JSON type; list items pairwise when there are as many,
    else each like the example's first."""
    assert _kind(ours) == _kind(example), f"{where}: {ours!r} is not like {example!r}"
    if isinstance(example, dict):
        missing = set(example) - set(ours)
        assert not missing, f"{where}: missing {missing} in {ours!r}"
        extra = set(ours) - set(example) - EXTRA_KEYS
        assert not extra, f"{where}: unexpected {extra} in {ours!r}"
        for k, v in example.items():
            assert_same_shape(v, ours[k], f"{where}.{k}")
    elif isinstance(example, list) and example:
        assert ours, f"{where}: empty list where the example has items"
        for i, item in enumerate(ours):
            assert_same_shape(example[i] if len(example) == len(ours) else example[0], item, f"{where}[{i}]")


def assert_same_xml_shape(example: str, ours: bytes) -> None:
    """The root and every element of ``example`` are in ``ours``, list items named alike."""
    want, got = ElementTree.fromstring(example.encode()), ElementTree.fromstring(ours)
    assert got.tag == want.tag, (got.tag, want.tag)
    _compare(want, got, want.tag)


def _compare(want: ElementTree.Element, got: ElementTree.Element, where: str) -> None:
    want_children, got_children = list(want), list(got)
    if not want_children:
        assert not got_children, f"{where}: has elements where the example has text"
        return
    if want.tag in ("scenarios", "flow", "messages", "results", "destinations"):  # lists
        assert got_children, f"{where}: no items"
        assert {c.tag for c in got_children} == {want_children[0].tag}, f"{where}: items {got_children}"
        for i, item in enumerate(got_children):
            like = want_children[i] if len(want_children) == len(got_children) else want_children[0]
            _compare(like, item, f"{where}/{item.tag}[{i}]")
        return
    got_tags = {c.tag: c for c in got_children}
    missing = {c.tag for c in want_children} - set(got_tags)
    assert not missing, f"{where}: missing {missing}"
    extra = set(got_tags) - {c.tag for c in want_children} - EXTRA_KEYS
    assert not extra, f"{where}: unexpected {extra}"
    for child in want_children:
        _compare(child, got_tags[child.tag], f"{where}/{child.tag}")


# --- the gateway -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool) -> Gateway:
    return module_gateways(ALADDIN_CONFIG + "\n[limits]\nmin_validity_seconds = 1\n")


@pytest.fixture(scope="module")
def key(gw: Gateway) -> str:
    r = gw.post("/omni/1/scenarios", {"name": "every channel", "flow": ALL_CHANNELS, "default": True})
    assert r.status == 200, r
    created: str = r.json["key"]
    return created


def _json_body(value: dict[str, Any], key: str, suffix: str) -> bytes:
    body = json.loads(json.dumps(value))
    if "scenarioKey" in body:
        body["scenarioKey"] = key
    for destination in body.get("destinations", []):
        if "messageId" in destination:
            destination["messageId"] += suffix
    return json.dumps(body).encode()


def _xml_body(value: str, key: str, suffix: str) -> bytes:
    value = re.sub(r"<scenarioKey>[^<]*</scenarioKey>", f"<scenarioKey>{key}</scenarioKey>", value)
    value = re.sub(r"<messageId>([^<]*)</messageId>", rf"<messageId>\1{suffix}</messageId>", value)
    return value.encode()


def send_example(gw: Gateway, key: str, path: str, method: str, media: str, name: str) -> Any:
    value = request_examples(path, method, media)[name]
    suffix = f"-{REQUEST_CASES.index((path, method, media, name))}"
    body = _json_body(value, key, suffix) if media == JSON else _xml_body(value, key, suffix)
    if "{scenarioKey}" in path:
        created = gw.post("/omni/1/scenarios", {"flow": [{"channel": "SMS", "from": "InfoSMS"}]})
        path = path.replace("{scenarioKey}", created.json["key"])
    return gw.request(method.upper(), path, body, headers={"Content-Type": media, "Accept": media})


# --- requests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method", "media", "name"), REQUEST_CASES,
                         ids=[f"{m.upper()} {p} {t.split('/')[1]}: {n}" for p, m, t, n in REQUEST_CASES])
def test_every_request_example_is_accepted(gw: Gateway, key: str, path: str, method: str, media: str,
                                           name: str) -> None:
    r = send_example(gw, key, path, method, media, name)
    assert r.status == 200, r
    assert r.headers["content-type"].startswith(media), r.headers
    if media == XML:
        root = ElementTree.fromstring(r.body)
        assert root.tag == ("omniResponse" if path == "/omni/1/advanced" else "scenario"), r
        return
    if path == "/omni/1/advanced":
        sent = json.loads(_json_body(request_examples(path, method, media)[name], key, ""))
        assert len(r.json["messages"]) == len(sent["destinations"]), r
        assert all(m["status"]["groupName"] == "PENDING" for m in r.json["messages"]), r
    else:
        sent = request_examples(path, method, media)[name]
        assert r.json["name"] == sent["name"] and r.json["flow"] == sent["flow"], r
        assert r.json["default"] is sent["default"] is r.json["defaultScenario"], r


# --- answers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("media", [JSON, XML])
def test_scenario_answers_have_the_examples_shape(gw: Gateway, key: str, media: str) -> None:
    for path, method, status in (("/omni/1/scenarios", "post", "201"),
                                 ("/omni/1/scenarios/{scenarioKey}", "put", "200")):
        answers = response_examples(path, method, status, media)
        assert answers
        for name in request_examples(path, method, media):
            r = send_example(gw, key, path, method, media, name)
            assert r.status == 200, r
            example = answers.get(name) or answers[name.replace("request", "response")]
            if media == JSON:
                assert_same_shape(example, r.json)
            else:
                assert_same_xml_shape(example, r.body)
    one = gw.get(f"/omni/1/scenarios/{key}", headers={"Accept": media})
    listed = gw.get("/omni/1/scenarios", headers={"Accept": media})
    for r, path in ((one, "/omni/1/scenarios/{scenarioKey}"), (listed, "/omni/1/scenarios")):
        assert r.status == 200, r
        for example in response_examples(path, "get", "200", media).values():
            if media == JSON:
                assert_same_shape(example, r.json)
            else:
                assert_same_xml_shape(example, r.body)


@pytest.mark.parametrize("media", [JSON, XML])
def test_send_answers_have_the_examples_shape(gw: Gateway, key: str, media: str) -> None:
    answers = response_examples("/omni/1/advanced", "post", "200", media)
    # requests whose destinations have the addresses of the answers' examples (the answer echoes each `to`)
    one = send_example(gw, key, "/omni/1/advanced", "post", media,
                       "Send a scheduled OMNI message with a custom Validity period")
    many = send_example(gw, key, "/omni/1/advanced", "post", media, "Send OMNI advanced message")
    for r, name in ((one, "Response example for one destination"),
                    (many, "Response example for multiple destinations")):
        assert r.status == 200, r
        if media == JSON:
            assert_same_shape(answers[name], r.json)
        else:
            assert_same_xml_shape(answers[name], r.body)


def _wait_until_final(gw: Gateway, bulk_id: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = gw.get(f"/omni/1/logs?bulkId={bulk_id}").json["results"]
        if len(logs) == count and all(e["status"]["groupName"] != "PENDING" for e in logs):
            return
        time.sleep(0.2)
    raise AssertionError("the messages did not reach a final state")


@pytest.mark.parametrize("media", [JSON, XML])
def test_report_and_log_answers_have_the_examples_shape(gw: Gateway, key: str, media: str) -> None:
    # a request of two destinations: the examples' reports carry a bulkId, which Infobip gives only then
    sms = gw.post("/omni/1/scenarios", {"flow": [{"channel": "SMS", "from": "InfoSMS"}]}).json["key"]
    sent = gw.post("/omni/1/advanced", {"scenarioKey": sms, "sms": {"text": "Test SMS."}, "destinations": [
        {"to": {"phoneNumber": "41793026700"}}, {"to": {"phoneNumber": "41793026705"}}]})
    assert sent.status == 200, sent
    bulk_id = sent.json["bulkId"]
    _wait_until_final(gw, bulk_id, 2)
    reports = gw.get(f"/omni/1/reports?bulkId={bulk_id}", headers={"Accept": media})
    assert reports.status == 200, reports
    logs = gw.get(f"/omni/1/logs?bulkId={bulk_id}", headers={"Accept": media})
    assert logs.status == 200, logs
    for r, path in ((reports, "/omni/1/reports"), (logs, "/omni/1/logs")):
        for example in response_examples(path, "get", "200", media).values():
            if media == JSON:
                assert_same_shape(example, r.json)
            else:
                assert_same_xml_shape(example, r.body)


BAD_REQUESTS = {
    ("/omni/1/scenarios", "get"): ("GET", "/omni/1/scenarios?limit=many", None),
    ("/omni/1/scenarios", "post"): ("POST", "/omni/1/scenarios", {"name": "no flow"}),
    ("/omni/1/scenarios/{scenarioKey}", "get"): ("GET", "/omni/1/scenarios?page=-1", None),
    ("/omni/1/scenarios/{scenarioKey}", "put"): ("PUT", "/omni/1/scenarios/{key}", {"flow": []}),
    ("/omni/1/advanced", "post"): ("POST", "/omni/1/advanced", {"destinations": []}),
    ("/omni/1/reports", "get"): ("GET", "/omni/1/reports?limit=0", None),
    ("/omni/1/logs", "get"): ("GET", "/omni/1/logs?generalStatus=SOMETIMES", None),
}


@pytest.mark.parametrize("media", [JSON, XML])
@pytest.mark.parametrize("operation", list(BAD_REQUESTS), ids=[f"{m.upper()} {p}" for p, m in BAD_REQUESTS])
def test_bad_request_answers_have_the_examples_shape(gw: Gateway, key: str, operation: tuple[str, str],
                                                     media: str) -> None:
    method, path, body = BAD_REQUESTS[operation]
    r = gw.request(method, path.replace("{key}", key), body, headers={"Accept": media})
    assert r.status == 400, r
    assert r.headers["content-type"].startswith(media), r.headers
    (example,) = response_examples(*operation, "400", media).values()
    if media == JSON:
        details = r.json["requestError"]["serviceException"]
        assert details.get("validationErrors"), r
        assert_same_shape(example, {"requestError": {"serviceException": {
            k: v for k, v in details.items() if k != "validationErrors"}}})
    else:
        got = ElementTree.fromstring(r.body)
        assert got.find("requestError/serviceException/validationErrors/field") is not None, r
        got.find("requestError/serviceException").remove(got.find("requestError/serviceException/validationErrors"))
        assert_same_xml_shape(example, ElementTree.tostring(got))
