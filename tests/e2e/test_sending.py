"""``POST /omni/1/advanced`` and ``/omni/1/text``: every rule a send request must meet, idempotent
client messageIds, bulkIds and big requests, against a real server."""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .conftest import ALADDIN_CONFIG, NODEFAULT_KEY, Gateway, app_auth

PENDING_ENROUTE = {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE",
                   "description": "Message sent to next instance"}
PHONE = "41793026727"
_ids = itertools.count()


def unique(prefix: str = "mid") -> str:
    return f"{prefix}-{time.time_ns()}-{next(_ids)}"


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    """Aladdin's WHATSAPP -> SMS scenario, also his default."""
    return str(gateway.create_scenario(name="wa-sms", default=True)["key"])


def base(key: str) -> dict[str, Any]:
    return {
        "scenarioKey": key,
        "destinations": [{"to": {"phoneNumber": PHONE}}],
        "whatsApp": {"text": "hello on WhatsApp"},
        "sms": {"text": "hello by SMS"},
    }


def assert_bad(r: Any, *fields: str, only: bool = True) -> None:
    """A 400 BAD_REQUEST naming ``fields`` in validationErrors (and, with ``only``, nothing else)."""
    assert r.status == 400, r
    exc = r.error()
    assert exc["messageId"] == "BAD_REQUEST", exc
    errors = r.validation()
    for f in fields:
        assert f in errors, f"{f!r} not named: {errors}"
        assert errors[f] and all(isinstance(m, str) and m for m in errors[f]), errors
    if only:
        assert set(errors) == set(fields), errors


def assert_accepted(r: Any, count: int = 1) -> dict[str, Any]:
    assert r.status == 200, r
    body: dict[str, Any] = r.json
    assert len(body["messages"]) == count, body
    for m in body["messages"]:
        assert m["status"] == PENDING_ENROUTE
        assert isinstance(m["messageId"], str) and m["messageId"]
    return body


def db_count(gw: Gateway, sql: str, *args: Any) -> int:
    return int(gw.query(sql, *args)[0][0])


# --- rules of validation.py and the types of model.py ----------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting a dotted path (``destinations.0.to.phoneNumber``) in the base request."""

    def mutate(body: dict[str, Any]) -> None:
        parts = path.split(".")
        node: Any = body
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        parts = path.split(".")
        node: Any = body
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[parts[-1]]

    return mutate


def _many(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        for m in mutations:
            m(body)

    return mutate


def _days(days: float, suffix: str = "+0000") -> str:
    when = datetime.now(UTC) + timedelta(days=days)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}" + suffix


TEMPLATE = {"templateName": "t", "templateData": ["1"], "language": "en_US"}

INVALID: dict[str, tuple[Callable[[dict[str, Any]], None], list[str]]] = {
    # destinations
    "no destinations key": (_del("destinations"), ["destinations"]),
    "empty destinations": (_set("destinations", []), ["destinations"]),
    "null destinations": (_set("destinations", None), ["destinations"]),
    "empty messageId": (_set("destinations.0.messageId", ""), ["destinations[0].messageId"]),
    "whatsAppUserId of 151": (_set("destinations.0.to.whatsAppUserId", "1." + "a" * 149),
                              ["destinations[0].to.whatsAppUserId"]),
    # whatsApp
    "whatsApp text of 4097": (_set("whatsApp.text", "x" * 4097), ["whatsApp.text"]),
    "whatsApp text of 4097 non-ascii": (_set("whatsApp.text", "é" * 4097), ["whatsApp.text"]),
    "template without language": (_set("whatsApp", {k: v for k, v in TEMPLATE.items() if k != "language"}),
                                  ["whatsApp.language"]),
    "template without templateName": (_set("whatsApp", {k: v for k, v in TEMPLATE.items() if k != "templateName"}),
                                      ["whatsApp.templateName"]),
    "template with empty language": (_set("whatsApp", {**TEMPLATE, "language": ""}), ["whatsApp.language"]),
    "template with only a name": (_set("whatsApp", {"templateName": "t"}), ["whatsApp.language"]),
    "media template without body": (_set("whatsApp", {**TEMPLATE, "mediaTemplateData": {"header": {}}}),
                                    ["whatsApp.mediaTemplateData.body"]),
    "policy other than deterministic|fallback": (_set("whatsApp", {**TEMPLATE, "policy": "strict"}),
                                                 ["whatsApp.policy"]),
    "bad imageUrl": (_set("whatsApp.imageUrl", "www.infobip.com/logo.png"), ["whatsApp.imageUrl"]),
    "ftp imageUrl": (_set("whatsApp.imageUrl", "ftp://infobip.com/logo.png"), ["whatsApp.imageUrl"]),
    "bad fileUrl": (_set("whatsApp.fileUrl", "file:///etc/passwd"), ["whatsApp.fileUrl"]),
    "bad audioUrl": (_set("whatsApp.audioUrl", "not a url"), ["whatsApp.audioUrl"]),
    "bad videoUrl": (_set("whatsApp.videoUrl", "http://"), ["whatsApp.videoUrl"]),
    "imageUrl over 2048": (_set("whatsApp.imageUrl", "http://x.example/" + "a" * 2040), ["whatsApp.imageUrl"]),
    "latitude without longitude": (_set("whatsApp", {"latitude": 45.0}), ["whatsApp.longitude"]),
    "longitude without latitude": (_set("whatsApp", {"longitude": 15.0}), ["whatsApp.latitude"]),
    "latitude out of range": (_set("whatsApp", {"latitude": 91.0, "longitude": 15.0}), ["whatsApp.latitude"]),
    "whatsApp without content": (_set("whatsApp", {}), ["whatsApp"]),
    "whatsApp with only a validity": (_set("whatsApp", {"validityPeriod": 5}), ["whatsApp"]),
    # other channel objects
    "push text of 2001": (_set("push", {"text": "p" * 2001}), ["push.text"]),
    "kakaoAlim text of 1001": (_set("kakaoAlim", {"text": "k" * 1001}), ["kakaoAlim.text"]),
    "viber fileType unknown": (_set("viber", {"fileUrl": "https://x.example/a.exe", "fileType": "exe"}),
                               ["viber.fileType"]),
    "viber fileUrl not a URL": (_set("viber", {"fileUrl": "x.example/a.pdf", "fileType": "pdf"}), ["viber.fileUrl"]),
    "viber buttonText without buttonURL": (_set("viber", {"text": "t", "buttonText": "Go"}), ["viber.buttonURL"]),
    "empty sms text": (_set("sms.text", ""), ["sms.text"]),
    "empty email text": (_set("email", {"text": ""}), ["email.text"]),
    "empty voice text": (_set("voice", {"text": ""}), ["voice.text"]),
    "no content for the scenario's channels": (_many(_del("whatsApp"), _del("sms"), _set("viber", {"text": "v"})),
                                               ["whatsApp"]),
    # request options
    "callbackData of 4001": (_set("callbackData", "c" * 4001), ["callbackData"]),
    "bad notifyUrl": (_set("notifyUrl", "example.com/callback"), ["notifyUrl"]),
    "notifyUrl with a space": (_set("notifyUrl", "http://example.com/a b"), ["notifyUrl"]),
    "notifyContentType text/plain": (_set("notifyContentType", "text/plain"), ["notifyContentType"]),
    "notifyContentType json shorthand": (_set("notifyContentType", "json"), ["notifyContentType"]),
    "bulkId of 201": (_set("bulkId", "b" * 201), ["bulkId"]),
    "empty bulkId": (_set("bulkId", ""), ["bulkId"]),
    # sendAt
    "sendAt 180 days ahead": (_set("sendAt", _days(180.01)), ["sendAt"]),
    "sendAt a year ahead": (_set("sendAt", _days(365, "Z")), ["sendAt"]),
    "sendAt malformed": (_set("sendAt", "tomorrow at noon"), ["sendAt"]),
    "sendAt not a date": (_set("sendAt", "2025-02-30T10:00:00.000+0000"), ["sendAt"]),
    "sendAt bad month": (_set("sendAt", "2025-13-01T10:00:00.000+0000"), ["sendAt"]),
    "sendAt bad offset": (_set("sendAt", "2025-01-01T10:00:00.000+2500"), ["sendAt"]),
    "sendAt date only": (_set("sendAt", "2025-01-01"), ["sendAt"]),
    "sendAt as a number": (_set("sendAt", 1735689600000), ["sendAt"]),
    # validity
    "unknown validityPeriodTimeUnit": (_set("sms.validityPeriodTimeUnit", "WEEKS"), ["sms.validityPeriodTimeUnit"]),
    "lower-case validityPeriodTimeUnit": (_set("whatsApp.validityPeriodTimeUnit", "minutes"),
                                          ["whatsApp.validityPeriodTimeUnit"]),
    "negative validityPeriod": (_set("sms.validityPeriod", -1), ["sms.validityPeriod"]),
    "fractional validityPeriod": (_set("sms.validityPeriod", 1.5), ["sms.validityPeriod"]),
    "string validityPeriod": (_set("sms.validityPeriod", "10"), ["sms.validityPeriod"]),
    "validityPeriod 10^400": (_set("sms.validityPeriod", 10**400), ["sms.validityPeriod"]),
    "validityPeriod over int32": (_set("sms.validityPeriod", 2**31), ["sms.validityPeriod"]),
    "line duration 10^30": (_set("line", {"type": "VIDEO", "url": "https://x.example/v.mp4", "duration": 10**30}),
                            ["line.duration"]),
    # sms text, language and transliteration
    "sms text of 26 parts": (_set("sms.text", "x" * (26 * 153)), ["sms.text"]),
    "sms text of 26 UCS-2 parts": (_set("sms.text", "я" * (25 * 67 + 1)), ["sms.text"]),
    "sms text of 1,000,000": (_set("sms.text", "x" * 1_000_000), ["sms.text"]),
    "unknown transliteration": (_set("sms.transliteration", "KLINGON"), ["sms.transliteration"]),
    "lower-case transliteration": (_set("sms.transliteration", "turkish"), ["sms.transliteration"]),
    "unknown languageCode": (_set("sms.language", {"languageCode": "XX"}), ["sms.language.languageCode"]),
    "languageCode as a number": (_set("sms.language", {"languageCode": 1}), ["sms.language.languageCode"]),
    # wrong types
    "destinations not a list": (_set("destinations", "41793026727"), ["destinations"]),
    "destination not an object": (_set("destinations", ["41793026727"]), ["destinations[0]"]),
    "phone number as a number": (_set("destinations.0.to.phoneNumber", 41793026727),
                                 ["destinations[0].to.phoneNumber"]),
    "to as a string": (_set("destinations.0.to", PHONE), ["destinations[0].to"]),
    "sms as a string": (_set("sms", "hello"), ["sms"]),
    "sms text as a number": (_set("sms.text", 5), ["sms.text"]),
    "templateData as a string": (_set("whatsApp", {**TEMPLATE, "templateData": "1"}), ["whatsApp.templateData"]),
    "templateData of numbers": (_set("whatsApp", {**TEMPLATE, "templateData": [1, 12]}),
                                ["whatsApp.templateData[0]"]),
    "notify as a string": (_set("notify", "yes"), ["notify"]),
    "intermediateReport as a number": (_set("intermediateReport", 1), ["intermediateReport"]),
    "scenarioKey as a number": (_set("scenarioKey", 12345), ["scenarioKey"]),
    "messageId as a number": (_set("destinations.0.messageId", 7), ["destinations[0].messageId"]),
}


#: Cases where a second, also true, complaint may come along (e.g. "whatsApp" has no usable content).
LOOSE = {"template without templateName", "longitude without latitude"}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_request_is_400_naming_the_field(gateway: Gateway, key: str, case: str) -> None:
    mutate, fields = INVALID[case]
    body = base(key)
    mutate(body)
    before = db_count(gateway, "SELECT COUNT(*) FROM messages")
    r = gateway.post("/omni/1/advanced", body)
    assert_bad(r, *fields, only=case not in LOOSE)
    assert r.error()["text"]
    assert db_count(gateway, "SELECT COUNT(*) FROM messages") == before  # nothing stored


@pytest.mark.parametrize(("raw", "field"), [
    ('"sms": {"text": "t", "validityPeriod": 1e400}', "sms.validityPeriod"),
    ('"sms": {"text": "t", "validityPeriod": -1e400}', "sms.validityPeriod"),
    ('"whatsApp": {"latitude": 1e400, "longitude": 15.0}', "whatsApp.latitude"),
    ('"sms": {"text": "t", "validityPeriod": 1' + "0" * 400 + "}", "sms.validityPeriod"),
    ('"push": {"text": "t", "customPayload": {"n": 1e400}}', "push.customPayload[...]"),
], ids=["1e400", "-1e400", "latitude 1e400", "10^400 as digits", "1e400 in a free-form object"])
def test_numbers_out_of_range_are_400_naming_the_field(gateway: Gateway, key: str, raw: str, field: str) -> None:
    body = f'{{"scenarioKey": "{key}", "destinations": [{{"to": {{"phoneNumber": "{PHONE}"}}}}], {raw}}}'
    assert_bad(gateway.post("/omni/1/advanced", body.encode()), field)


VALID: dict[str, Callable[[dict[str, Any]], None]] = {
    "whatsApp text of 4096": _set("whatsApp.text", "x" * 4096),
    "whatsApp text of 4096 non-ascii": _set("whatsApp.text", "é" * 4096),
    "callbackData of 4000": _set("callbackData", "c" * 4000),
    "template without templateNamespace or templateData": _set("whatsApp", {"templateName": "t", "language": "en"}),
    "media template without templateData": _set("whatsApp", {"templateName": "t", "language": "en",
                                                             "mediaTemplateData": {
        "header": {"imageUrl": "https://www.example.com/image.png"}, "body": {"placeholders": ["Jennifer"]}}}),
    "policy deterministic": _set("whatsApp", {**TEMPLATE, "policy": "deterministic"}),
    "policy fallback": _set("whatsApp", {**TEMPLATE, "policy": "fallback"}),
    "policy upper-case (legacy)": _set("whatsApp", {**TEMPLATE, "policy": "FALLBACK"}),
    "notifyContentType json": _set("notifyContentType", "application/json"),
    "notifyContentType xml": _set("notifyContentType", "application/xml"),
    "notifyUrl https": _set("notifyUrl", "https://example.com/dlr?x=1"),
    "sendAt 179 days ahead": _set("sendAt", _days(179)),
    "sendAt in the past": _set("sendAt", "2015-02-23T16:41:11.833+0000"),
    "validityPeriod 0": _set("sms.validityPeriod", 0),
    "validityPeriod with each unit": _many(*[_set(f"{c}.validityPeriodTimeUnit", u) for c, u in
                                             (("sms", "HOURS"), ("whatsApp", "SECONDS"))]),
    "validityPeriod over 48 h (clamped)": _set("sms", {"text": "t", "validityPeriod": 100,
                                                       "validityPeriodTimeUnit": "DAYS"}),
    "push text of 2000": _set("push", {"text": "p" * 2000}),
    "kakaoAlim text of 1000": _set("kakaoAlim", {"text": "k" * 1000}),
    "only whatsApp content": _del("sms"),
    "only sms content": _del("whatsApp"),
    "whatsApp location": _set("whatsApp", {"latitude": 45.8, "longitude": 15.97, "locationName": "Zagreb"}),
    "whatsApp image only": _set("whatsApp", {"imageUrl": "http://www.infobip.com/infobip-logo.png"}),
    "whatsApp contacts": _set("whatsApp", {"contacts": [{"name": {"firstName": "J", "formattedName": "J"}}]}),
    "legacy nulls": _many(_set("bulkId", None), _set("notify", None), _set("sendAt", None), _set("viber", None),
                          _set("destinations.0.messageId", None)),
    "unknown fields ignored": _many(_set("someFutureField", {"a": 1}), _set("sms.unknownKnob", True)),
    "whatsAppUserId instead of a phone": _set("destinations.0.to", {"whatsAppUserId": "41.abc123"}),
    "phone with +": _set("destinations.0.to.phoneNumber", "+41793026727"),
    "bulkId of 200": _set("bulkId", "b" * 200),
    "validityPeriod of int32 max (clamped)": _set("sms.validityPeriod", 2**31 - 1),
    "sms text of 25 parts": _set("sms.text", "x" * (25 * 153)),
    "sms text of 25 UCS-2 parts": _set("sms.text", "я" * (25 * 67)),
    "sms language and transliteration": _set("sms", {"text": "Türkçe", "transliteration": "TURKISH",
                                                     "language": {"languageCode": "TR"}}),
    "sms language autodetect, legacy shift flags": _set("sms", {"text": "ş", "language": {
        "languageCode": "AUTODETECT", "singleShift": True, "lockingShift": False}}),
}


@pytest.mark.parametrize("case", list(VALID), ids=list(VALID))
def test_valid_request_variants_are_accepted(gateway: Gateway, key: str, case: str) -> None:
    body = base(key)
    VALID[case](body)
    assert_accepted(gateway.post("/omni/1/advanced", body))


def test_more_than_10000_destinations(gateway: Gateway, key: str) -> None:
    body = base(key)
    body["destinations"] = [{"to": {"phoneNumber": f"4179{i:07d}"}} for i in range(10_001)]
    assert_bad(gateway.post("/omni/1/advanced", body), "destinations")


def test_exactly_10000_destinations_are_accepted(gateway: Gateway, key: str) -> None:
    body = base(key)
    body["destinations"] = [{"to": {"phoneNumber": f"4179{i:07d}"}} for i in range(10_000)]
    answer = assert_accepted(gateway.post("/omni/1/advanced", body, timeout=120), 10_000)
    assert len({m["messageId"] for m in answer["messages"]}) == 10_000


def test_max_destinations_is_configurable(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG + "\n[limits]\nmax_destinations = 3\n")
    k = gw.create_scenario()["key"]
    body = base(k)
    body["destinations"] = [{"to": {"phoneNumber": f"4179302672{i}"}} for i in range(3)]
    assert_accepted(gw.post("/omni/1/advanced", body), 3)
    body["destinations"].append({"to": {"phoneNumber": "41793026729"}})
    assert_bad(gw.post("/omni/1/advanced", body), "destinations")


def test_1000_destinations_in_one_request(gateway: Gateway, key: str) -> None:
    body = base(key)
    phones = [f"4179{i:07d}" for i in range(1000)]
    body["destinations"] = [{"to": {"phoneNumber": p}} for p in phones]
    answer = assert_accepted(gateway.post("/omni/1/advanced", body), 1000)
    assert [m["to"] for m in answer["messages"]] == [{"phoneNumber": p} for p in phones]  # order kept
    assert len({m["messageId"] for m in answer["messages"]}) == 1000
    assert isinstance(answer.get("bulkId"), str) and answer["bulkId"]
    stored = db_count(gateway, "SELECT COUNT(*) FROM messages WHERE bulk_id = ?", answer["bulkId"])
    assert stored == 1000


# --- malformed and oversize bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{", b"", b"not json", b'{"destinations": [}', b"[]", b"null", b'"text"',
                                 b'{"destinations": [{"to": {"phoneNumber": "41793026727"}}],}',
                                 b"\xff\xfe{}"],
                         ids=["truncated", "empty", "text", "bad array", "array", "null", "string",
                              "trailing comma", "bad utf-8"])
def test_malformed_json_is_400(gateway: Gateway, key: str, raw: bytes) -> None:
    r = gateway.post("/omni/1/advanced", raw)
    assert r.status == 400, r
    assert r.error()["messageId"] == "BAD_REQUEST"
    assert r.validation(), r


def test_oversize_body_is_413_in_the_envelope(gateway: Gateway, key: str) -> None:
    body = base(key)
    body["sms"]["text"] = "x" * (17 * 1024 * 1024)  # the default limit is 16 MB
    try:
        r = gateway.post("/omni/1/advanced", body, timeout=60)
    except (ConnectionResetError, BrokenPipeError) as exc:  # pragma: no cover - shows up as a failure
        pytest.fail(f"the server dropped the connection instead of answering 413: {exc!r}")
    assert r.status == 413, r
    assert r.error()["messageId"] == "PAYLOAD_TOO_LARGE"
    # the server is fine afterwards
    assert_accepted(gateway.post("/omni/1/advanced", base(key)))


def test_body_limit_is_configurable(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG + "\n[limits]\nmax_body_mb = 0.01\n")
    k = gw.create_scenario()["key"]
    body = base(k)
    assert_accepted(gw.post("/omni/1/advanced", body))
    body["sms"]["text"] = "x" * 20_000
    r = gw.post("/omni/1/advanced", body)
    assert r.status == 413, r
    assert r.error()["messageId"] == "PAYLOAD_TOO_LARGE"


def test_empty_xml_body_is_validated_like_json(gateway: Gateway, key: str) -> None:
    r = gateway.post("/omni/1/advanced", b"<OmniAdvancedRequest/>", headers={"Content-Type": "application/xml"})
    assert_bad(r, "destinations", only=False)


# --- scenario selection --------------------------------------------------------------------------------------


def test_no_scenario_key_and_no_default_scenario(gateway: Gateway, key: str) -> None:
    body = base(key)
    del body["scenarioKey"]
    assert_bad(gateway.post("/omni/1/advanced", body, auth=app_auth(NODEFAULT_KEY)), "scenarioKey")
    # an empty key means "not set" too
    assert_bad(gateway.post("/omni/1/advanced", {**body, "scenarioKey": ""}, auth=app_auth(NODEFAULT_KEY)),
               "scenarioKey")
    assert_bad(gateway.post("/omni/1/text", {"destinations": body["destinations"], "text": "t"},
                            auth=app_auth(NODEFAULT_KEY)), "scenarioKey")


def test_unknown_scenario_key(gateway: Gateway, key: str) -> None:
    assert_bad(gateway.post("/omni/1/advanced", {**base(key), "scenarioKey": "F" * 32}), "scenarioKey")


def test_no_scenario_key_uses_the_default(gateway: Gateway, key: str) -> None:
    body = base(key)
    del body["scenarioKey"]
    assert_accepted(gateway.post("/omni/1/advanced", body))


# --- idempotency by client messageId -------------------------------------------------------------------------


def test_same_message_id_and_content_gives_the_same_answer_once(gateway: Gateway, key: str) -> None:
    body = base(key)
    body["destinations"] = [{"messageId": unique(), "to": {"phoneNumber": PHONE}}]
    first = gateway.post("/omni/1/advanced", body)
    assert_accepted(first)
    assert first.json["messages"][0]["messageId"] == body["destinations"][0]["messageId"]
    before = db_count(gateway, "SELECT COUNT(*) FROM messages")
    second = gateway.post("/omni/1/advanced", copy.deepcopy(body))
    assert second.status == 200, second
    assert second.json == first.json
    assert db_count(gateway, "SELECT COUNT(*) FROM messages") == before  # no second message
    assert db_count(gateway, "SELECT COUNT(*) FROM messages WHERE message_id = ?",
                    body["destinations"][0]["messageId"]) == 1


def test_replayed_bulk_gives_the_same_message_ids_and_bulk_id(gateway: Gateway, key: str) -> None:
    body = base(key)
    body["destinations"] = [{"messageId": unique(), "to": {"phoneNumber": f"4179302672{i}"}} for i in range(5)]
    first = assert_accepted(gateway.post("/omni/1/advanced", body), 5)
    assert first.get("bulkId")
    before = db_count(gateway, "SELECT COUNT(*) FROM messages")
    for _ in range(2):
        again = gateway.post("/omni/1/advanced", body)
        assert again.status == 200, again
        assert again.json == first
    assert db_count(gateway, "SELECT COUNT(*) FROM messages") == before


def test_replay_with_json_reformatted_is_the_same_request(gateway: Gateway, key: str) -> None:
    """Idempotency is about content, not bytes: key order and whitespace do not matter."""
    body = base(key)
    body["destinations"] = [{"messageId": unique(), "to": {"phoneNumber": PHONE}}]
    first = assert_accepted(gateway.post("/omni/1/advanced", json.dumps(body)))
    reordered = dict(reversed(list(body.items())))
    again = gateway.post("/omni/1/advanced", json.dumps(reordered, indent=4))
    assert again.status == 200, again
    assert again.json == first


def test_concurrent_replays_store_one_message(gateway: Gateway, key: str) -> None:
    import concurrent.futures

    body = base(key)
    body["destinations"] = [{"messageId": unique(), "to": {"phoneNumber": PHONE}}]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: gateway.post("/omni/1/advanced", body), range(8)))
    assert all(a.status == 200 for a in answers), answers
    assert len({a.text for a in answers}) == 1
    assert db_count(gateway, "SELECT COUNT(*) FROM messages WHERE message_id = ?",
                    body["destinations"][0]["messageId"]) == 1


CONFLICTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "other sms text": _set("sms.text", "a different text"),
    "other whatsApp text": _set("whatsApp.text", "a different text"),
    "other phone number": _set("destinations.0.to.phoneNumber", "41790000000"),
    "other sendAt": _set("sendAt", _days(2)),
    "other callbackData": _set("callbackData", "other"),
    "other notifyUrl": _set("notifyUrl", "https://example.com/other"),
    "other validity": _set("sms.validityPeriod", 5),
}


DUPLICATE_ID = "REJECTED_DUPLICATE_MESSAGE_ID"


def statuses(r: Any) -> list[str]:
    assert r.status == 200, r
    return [m["status"]["name"] for m in r.json["messages"]]


@pytest.mark.parametrize("change", list(CONFLICTS), ids=list(CONFLICTS))
def test_same_message_id_with_different_content_is_rejected_duplicate(gateway: Gateway, key: str,
                                                                       change: str) -> None:
    body = base(key)
    mid = unique()
    body["destinations"] = [{"messageId": mid, "to": {"phoneNumber": PHONE}}]
    first = assert_accepted(gateway.post("/omni/1/advanced", body))
    other = copy.deepcopy(body)
    CONFLICTS[change](other)
    again = gateway.post("/omni/1/advanced", other)
    assert statuses(again) == [DUPLICATE_ID]
    assert again.json["messages"][0]["messageId"] == mid
    assert again.json["messages"][0]["status"]["groupName"] == "REJECTED"
    # the original is unchanged and still answers the same
    assert gateway.post("/omni/1/advanced", body).json == first
    assert db_count(gateway, "SELECT COUNT(*) FROM messages WHERE message_id = ?", mid) == 1


def test_conflict_on_a_later_destination_rejects_it_alone(gateway: Gateway, key: str) -> None:
    taken = unique()
    body = base(key)
    body["destinations"] = [{"messageId": taken, "to": {"phoneNumber": PHONE}}]
    assert_accepted(gateway.post("/omni/1/advanced", body))
    fresh = unique()
    mixed = base(key)
    mixed["sms"]["text"] = "different content"
    mixed["destinations"] = [{"messageId": fresh, "to": {"phoneNumber": PHONE}},
                             {"messageId": taken, "to": {"phoneNumber": PHONE}}]
    answer = gateway.post("/omni/1/advanced", mixed)
    assert statuses(answer) == ["PENDING_ENROUTE", DUPLICATE_ID]
    assert [m["messageId"] for m in answer.json["messages"]] == [fresh, taken]
    assert db_count(gateway, "SELECT COUNT(*) FROM messages WHERE message_id = ?", fresh) == 1


def test_message_id_conflict_across_scenarios_is_rejected_duplicate(gateway: Gateway, key: str) -> None:
    other_key = gateway.create_scenario([{"channel": "SMS", "from": "Other"}], name="sms only")["key"]
    body = base(key)
    body["destinations"] = [{"messageId": unique(), "to": {"phoneNumber": PHONE}}]
    assert_accepted(gateway.post("/omni/1/advanced", body))
    assert statuses(gateway.post("/omni/1/advanced", {**body, "scenarioKey": other_key})) == [DUPLICATE_ID]


# --- bulkId ------------------------------------------------------------------------------------------------


def test_single_destination_without_bulk_id_has_none(gateway: Gateway, key: str) -> None:
    answer = assert_accepted(gateway.post("/omni/1/advanced", base(key)))
    assert "bulkId" not in answer


def test_single_destination_with_bulk_id_echoes_it(gateway: Gateway, key: str) -> None:
    bulk = unique("BULK-ID-123-xyz")
    answer = assert_accepted(gateway.post("/omni/1/advanced", {**base(key), "bulkId": bulk}))
    assert answer["bulkId"] == bulk


def test_many_destinations_get_a_bulk_id(gateway: Gateway, key: str) -> None:
    body = base(key)
    body["destinations"] = [{"to": {"phoneNumber": PHONE}}, {"to": {"phoneNumber": "41793026728"}}]
    a = assert_accepted(gateway.post("/omni/1/advanced", body), 2)
    b = assert_accepted(gateway.post("/omni/1/advanced", body), 2)
    assert isinstance(a.get("bulkId"), str) and a["bulkId"]
    assert isinstance(b.get("bulkId"), str) and b["bulkId"]
    assert a["bulkId"] != b["bulkId"]
    assert a["messages"][0]["messageId"] != a["messages"][1]["messageId"]


def test_many_destinations_with_bulk_id_echo_it(gateway: Gateway, key: str) -> None:
    bulk = unique("my-bulk")
    body = base(key)
    body["bulkId"] = bulk
    body["destinations"] = [{"to": {"phoneNumber": PHONE}}, {"to": {"phoneNumber": "41793026728"}}]
    assert assert_accepted(gateway.post("/omni/1/advanced", body), 2)["bulkId"] == bulk
    assert db_count(gateway, "SELECT COUNT(*) FROM messages WHERE bulk_id = ?", bulk) == 2


def test_partly_replayed_bulk_still_answers_a_bulk_id(gateway: Gateway, key: str) -> None:
    """Two destinations, the first already accepted alone earlier: the answer still has the bulkId
    that the new message was stored under (more than one destination means a bulkId)."""
    first, second = unique(), unique()
    alone = base(key)
    alone["destinations"] = [{"messageId": first, "to": {"phoneNumber": PHONE}}]
    assert_accepted(gateway.post("/omni/1/advanced", alone))
    both = base(key)
    both["destinations"] = [{"messageId": first, "to": {"phoneNumber": PHONE}},
                            {"messageId": second, "to": {"phoneNumber": "41793026728"}}]
    answer = assert_accepted(gateway.post("/omni/1/advanced", both), 2)
    assert [m["messageId"] for m in answer["messages"]] == [first, second]
    assert isinstance(answer.get("bulkId"), str) and answer["bulkId"], answer
    assert db_count(gateway, "SELECT COUNT(*) FROM messages WHERE message_id = ? AND bulk_id = ?",
                    second, answer["bulkId"]) == 1


# --- the answer -----------------------------------------------------------------------------------------------


def test_answer_echoes_to_and_client_message_ids(gateway: Gateway, key: str) -> None:
    body = base(key)
    mid = unique()
    body["destinations"] = [
        {"messageId": mid, "to": {"phoneNumber": PHONE}},
        {"to": {"phoneNumber": "41793026728", "emailAddress": "a@example.com"}},
    ]
    answer = assert_accepted(gateway.post("/omni/1/advanced", body), 2)
    assert answer["messages"][0]["messageId"] == mid
    assert answer["messages"][0]["to"] == {"phoneNumber": PHONE}
    assert answer["messages"][1]["to"] == {"phoneNumber": "41793026728", "emailAddress": "a@example.com"}
    assert answer["messages"][1]["messageId"] != mid


# --- the legacy /omni/1/text ------------------------------------------------------------------------------------


def test_text_endpoint_docs_example(gateway: Gateway, key: str) -> None:
    body = {"destinations": [{"to": {"phoneNumber": "41793026727", "emailAddress": "email@example.com"}}],
            "text": "A long time ago in a galaxy far, far away..."}
    answer = assert_accepted(gateway.post("/omni/1/text", body))
    assert answer["messages"][0]["to"] == {"phoneNumber": "41793026727", "emailAddress": "email@example.com"}
    assert "bulkId" not in answer


def test_text_endpoint_with_scenario_key_bulk_and_message_ids(gateway: Gateway, key: str) -> None:
    mid = unique()
    body = {"scenarioKey": key, "bulkId": unique("text-bulk"), "text": "hello",
            "destinations": [{"messageId": mid, "to": {"phoneNumber": PHONE}},
                             {"messageId": mid + "-2", "to": {"phoneNumber": "41793026728"}}]}
    answer = assert_accepted(gateway.post("/omni/1/text", body), 2)
    assert answer["bulkId"] == body["bulkId"]
    assert [m["messageId"] for m in answer["messages"]] == [mid, mid + "-2"]
    assert gateway.post("/omni/1/text", body).json == answer  # idempotent too
    assert statuses(gateway.post("/omni/1/text", {**body, "text": "changed"})) == [DUPLICATE_ID, DUPLICATE_ID]


def test_text_endpoint_validation(gateway: Gateway, key: str) -> None:
    dest = [{"to": {"phoneNumber": PHONE}}]
    assert_bad(gateway.post("/omni/1/text", {"destinations": dest}), "text")
    assert_bad(gateway.post("/omni/1/text", {"destinations": dest, "text": ""}), "text")
    assert_bad(gateway.post("/omni/1/text", {"destinations": [], "text": "t"}), "destinations")
    assert statuses(gateway.post("/omni/1/text", {"destinations": [{"to": {"phoneNumber": "x"}}], "text": "t"})) \
        == ["REJECTED_DESTINATION"]
    assert_bad(gateway.post("/omni/1/text", {"destinations": dest, "text": "x" * 5000}), "text")
    assert_bad(gateway.post("/omni/1/text", {"destinations": dest, "text": 5}), "text")


@pytest.mark.parametrize("length", [2500, 3825])
def test_text_endpoint_long_text_for_an_sms_only_scenario(gateway: Gateway, key: str, length: int) -> None:
    """A long SMS (concatenated) through the legacy endpoint: the scenario has only SMS, so limits of
    channels it does not use (push 2000, WhatsApp 4096) must not refuse it, nor name fields never sent."""
    sms_key = gateway.create_scenario([{"channel": "SMS", "from": "InfoSMS"}], name="sms only")["key"]
    body = {"scenarioKey": sms_key, "destinations": [{"to": {"phoneNumber": PHONE}}], "text": "x" * length}
    assert_accepted(gateway.post("/omni/1/text", body))
