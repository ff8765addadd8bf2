"""Hostile input among good traffic, as a client sends it: one bad request never fails another, text no
database stores and JSON nested without end are a 400 naming the field, and nothing of it leaves a
traceback in the gateway's log. Runs on either store (``OMNIRELAY_TEST_STORE=postgres``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, Response

pytestmark = pytest.mark.timeout(180)


def _send_body(message_id: str) -> dict[str, Any]:
    return {
        "destinations": [{"messageId": message_id, "to": {"phoneNumber": "41793026726"}}],
        "sms": {"text": "hello"},
        "whatsApp": {"text": "hello"},
    }


@pytest.fixture(scope="module")
def gw(gateway: Gateway) -> Gateway:
    gateway.create_scenario(default=True)
    return gateway


def _no_traceback(gw: Gateway) -> None:
    assert "Traceback" not in gw.output, gw.output[-3000:]


def test_nul_message_ids_among_240_concurrent_sends(gw: Gateway) -> None:
    run = uuid.uuid4().hex[:8]
    good = [f"{run}-ok-{i}" for i in range(240)]
    bad = [f"{run}-nul-{i}\u0000x" for i in range(6)]
    order = list(good)
    for k, message_id in enumerate(bad):
        order.insert(20 + 40 * k, message_id)

    async def send_all() -> list[tuple[int, Any]]:
        async with gw.session() as session:

            async def one(message_id: str) -> tuple[int, Any]:
                async with session.post("/omni/1/advanced", json=_send_body(message_id)) as r:
                    return r.status, await r.json(content_type=None)

            return list(await asyncio.gather(*(one(m) for m in order)))

    answers = dict(zip(order, asyncio.run(send_all()), strict=True))
    for message_id in good:
        status, body = answers[message_id]
        assert status == 200, (message_id, status, body)
        assert body["messages"][0]["messageId"] == message_id
    for message_id in bad:
        status, body = answers[message_id]
        assert status == 400, (message_id, status, body)
        errors = body["requestError"]["serviceException"]["validationErrors"]
        assert list(errors) == ["destinations[0].messageId"], body
        assert "NUL" in errors["destinations[0].messageId"][0]
    stored = {r[0] for r in gw.query("SELECT message_id FROM messages WHERE message_id LIKE ?", f"{run}-%")}
    assert stored == set(good)
    _no_traceback(gw)


@pytest.mark.parametrize(
    ("raw_field", "field"),
    [
        (b'"messageId": "x\\ud800"', "destinations[0].messageId"),  # an unpaired surrogate, as JSON escapes it
        (b'"messageId": "x\xff\xfe"', "destinations[0].messageId"),  # bytes that are not UTF-8
        (b'"messageId": "\\udc00\\ud83d"', "destinations[0].messageId"),  # a pair the wrong way round
    ],
)
def test_text_no_database_stores_is_a_400_naming_the_field(gw: Gateway, raw_field: bytes, field: str) -> None:
    body = b'{"destinations": [{' + raw_field + b', "to": {"phoneNumber": "41793026726"}}], "sms": {"text": "x"}}'
    r = gw.post("/omni/1/advanced", body)
    assert r.status == 400, r
    assert list(r.validation()) == [field], r
    _no_traceback(gw)


def test_a_nul_in_a_free_form_key_is_named(gw: Gateway) -> None:
    body = _send_body(uuid.uuid4().hex)
    body["sms"]["regional"] = {"indiaDlt": {"content\u0000TemplateId": "1"}}
    r = gw.post("/omni/1/advanced", body)
    assert r.status == 400, r
    assert list(r.validation()) == ["sms.regional.indiaDlt"], r


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/omni/1/logs?messageId=a%00b", "messageId"),
        ("/omni/1/logs?to=%00", "to"),
        ("/omni/1/reports?bulkId=%00", "bulkId"),
        ("/omni/1/messages/a%00b", "messageId"),
        ("/omni/1/scenarios/k%00", "key"),
    ],
)
def test_a_nul_in_the_url_is_a_400_naming_the_parameter(gw: Gateway, path: str, field: str) -> None:
    r = gw.get(path)
    assert r.status == 400, r
    assert list(r.validation()) == [field], r
    _no_traceback(gw)


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": [value]}
    return value


@pytest.mark.parametrize("levels", [40, 2_000])  # 80 and 4,000 levels of JSON
def test_json_nested_without_end_is_a_400(gw: Gateway, levels: int) -> None:
    message_id = uuid.uuid4().hex
    body = _send_body(message_id)
    body["sms"]["regional"] = {"x": "PLACE"}
    nested = b'{"a": [' * levels + b'"leaf"' + b"]}" * levels  # json.dumps itself would recurse too deep
    r = gw.post("/omni/1/advanced", json.dumps(body).encode().replace(b'{"x": "PLACE"}', nested))
    assert r.status == 400, r
    (field,) = r.validation()
    assert field.startswith("sms.regional"), r
    assert "nested deeper than 64 levels" in r.validation()[field][0]
    assert gw.get(f"/omni/1/messages/{message_id}").status == 404  # nothing of it stored
    assert gw.get("/omni/1/logs?limit=5").status == 200
    _no_traceback(gw)


def test_free_form_json_within_the_limit_is_kept(gw: Gateway) -> None:
    message_id = uuid.uuid4().hex
    body = _send_body(message_id)
    body["sms"]["regional"] = _nested(30)  # 60 levels + sms + the body: 62
    r = gw.post("/omni/1/advanced", body)
    assert r.status == 200, r
    assert gw.get(f"/omni/1/messages/{message_id}").status == 200


def _raw(gw: Gateway, request: bytes) -> Response:
    return gw.raw(request, timeout=10)


_MALFORMED = {
    "bad request line": b"GET /omni/1/reports HTTP/1.1 trailing\r\nHost: x\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "bad header name": b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    "header line too long": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    "too many headers": b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200))
    + b"\r\n",
    "bad content length": b"POST /omni/1/advanced HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "bad chunk size": b"POST /omni/1/advanced HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/json\r\nAuthorization: App %s\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(_MALFORMED))
def test_malformed_http_is_answered_in_the_envelope(gw: Gateway, case: str) -> None:
    request = _MALFORMED[case]
    if b"%s" in request:
        assert gw.default_auth is not None
        request = request % gw.default_auth.split()[1].encode()
    r = _raw(gw, request)
    assert r.status == 400, r
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.error()["messageId"] == "BAD_REQUEST", r
    assert gw.get("/health").status == 200
    _no_traceback(gw)
