"""Infobip's "OMNI channel: WhatsApp example" tutorial, request by request, against a real server.

Each request is sent as the tutorial writes it: same request line, same headers (``Host: api.infobip.com``
and the Basic header included), same body bytes (tabs and trailing blanks included). The only change is
the scenario key in the send examples, which must be the key our server issued; and a Content-Length,
which HTTP/1.1 needs and the tutorial leaves out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .conftest import UNAUTHORIZED, Gateway

TUTORIAL_KEY = "CC9F01A5DC7BEE2C2B829D203482A654"

CREATE_HEAD = (
    "POST /omni/1/scenarios HTTP/1.1\n"
    "Host: api.infobip.com\n"
    "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\n"
    "Content-Type: application/json\n"
)
CREATE_BODY = (
    '{\n  "name":"My WHATSAPP-SMS scenario",\n  "flow": [\n    {\n      "from": "WhatsAppSender",\n'
    '      "channel": "WHATSAPP"\n    },\n    {\n      "from": "InfoSMS",\n      "channel": "SMS"\n'
    '    }    \n  ],\n  "default": true\n}'
)
CREATE_RESPONSE = {  # the tutorial's answer, less its key
    "name": "My WHATSAPP-SMS scenario",
    "flow": [{"from": "WhatsAppSender", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}],
    "default": True,
}

SEND_HEAD = (
    "POST /omni/1/advanced HTTP/1.1\n"
    "Host: api.infobip.com\n"
    "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\n"
    "Content-Type: application/json\n"
)
SEND_BODY = (
    '{\n\t"scenarioKey": "CC9F01A5DC7BEE2C2B829D203482A654",\n\t"destinations": [{\n\t\t"to": {\n'
    '\t\t\t"phoneNumber": "41793026727"\n\t\t}\n\t}],\n\t"whatsApp": {\n'
    '\t\t"text": "This WhatsApp message will be delivered to WhatsApp application on the user device."\n'
    '\t},\n\t"sms": {\n\t\t"text": "This is the SMS failover message"\n\t}\n}'
)
IMAGE_BODY = (
    '{\n\t"scenarioKey": "CC9F01A5DC7BEE2C2B829D203482A654",\n\t"destinations": [{\n\t\t"to": {\n'
    '\t\t\t"phoneNumber": "41793026727"\n\t\t}\n\t}],\n\t"whatsApp": {\n'
    '\t\t"text": "Get your message across!",\n\t\t"imageUrl": "http://www.infobip.com/infobip-logo.png"\n'
    '\t},\n\t"sms": {\n'
    '\t\t"text": "This text will be received via SMS if WhatsApp message is not delivered.",\n'
    '\t\t"validityPeriod": 1\n\t}\n}'
)
TEMPLATE_BODY = (
    '{\n\t"scenarioKey": "CC9F01A5DC7BEE2C2B829D203482A654",\n\t"destinations": [{\n\t\t"to": {\n'
    '\t\t\t"phoneNumber": "41793026727"\n\t\t}\n\t}],\n\t"whatsApp": {\n'
    '\t\t"templateName": "template_name",\n\t\t"templateNamespace": "whatsapp:hsm:templatenamespace",\n'
    '\t\t"templateData": ["1", "12"],\n\t\t"language": "en_US"\n\t}\n}'
)
REPORTS_REQUEST = (
    "GET /omni/1/reports HTTP/1.1\n"
    "Host: api.infobip.com\n"
    "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\n"
    "Accept: application/json\t\n"
)

PENDING_ENROUTE = {
    "groupId": 1,
    "groupName": "PENDING",
    "id": 7,
    "name": "PENDING_ENROUTE",
    "description": "Message sent to next instance",
}


def http_bytes(head: str, body: str | None = None, *, drop: tuple[str, ...] = ()) -> bytes:
    """The tutorial's request as wire bytes: CRLF line ends, Content-Length and Connection: close added."""
    lines = [line for line in head.rstrip("\n").split("\n") if not line.lower().startswith(drop)]
    data = body.encode() if body is not None else b""
    if body is not None:
        lines.append(f"Content-Length: {len(data)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


@pytest.fixture(scope="module")
def scenario(gateway: Gateway) -> dict[str, Any]:
    """The tutorial's scenario, created by its own request."""
    r = gateway.raw(http_bytes(CREATE_HEAD, CREATE_BODY))
    assert r.status == 200, r
    created: dict[str, Any] = r.json
    return created


def assert_one_pending(r: Any, phone: str = "41793026727") -> str:
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("application/json")
    body = r.json
    assert set(body) == {"messages"}, body  # one destination and no bulkId given: no bulkId
    (msg,) = body["messages"]
    assert msg["to"] == {"phoneNumber": phone}
    assert msg["status"] == PENDING_ENROUTE
    assert isinstance(msg["messageId"], str) and msg["messageId"]
    message_id: str = msg["messageId"]
    return message_id


def test_create_scenario_as_in_the_tutorial(gateway: Gateway, scenario: dict[str, Any]) -> None:
    assert re.fullmatch(r"[0-9A-F]{32}", scenario["key"]), scenario
    # and the default flag once more under the old official clients' name
    assert {k: v for k, v in scenario.items() if k != "key"} == {**CREATE_RESPONSE, "defaultScenario": True}
    # it is stored as answered
    again = gateway.get(f"/omni/1/scenarios/{scenario['key']}")
    assert again.status == 200, again
    assert again.json == scenario


def test_create_scenario_without_authorization_is_401(gateway: Gateway) -> None:
    r = gateway.raw(http_bytes(CREATE_HEAD, CREATE_BODY, drop=("authorization",)))
    assert r.status == 401, r
    assert r.json == UNAUTHORIZED


def test_send_advanced_message_as_in_the_tutorial(gateway: Gateway, scenario: dict[str, Any]) -> None:
    r = gateway.raw(http_bytes(SEND_HEAD, SEND_BODY.replace(TUTORIAL_KEY, scenario["key"])))
    assert_one_pending(r)


def test_each_send_gets_a_new_message_id(gateway: Gateway, scenario: dict[str, Any]) -> None:
    body = SEND_BODY.replace(TUTORIAL_KEY, scenario["key"])
    first = assert_one_pending(gateway.raw(http_bytes(SEND_HEAD, body)))
    second = assert_one_pending(gateway.raw(http_bytes(SEND_HEAD, body)))
    assert first != second


def test_send_without_authorization_is_401(gateway: Gateway, scenario: dict[str, Any]) -> None:
    body = SEND_BODY.replace(TUTORIAL_KEY, scenario["key"])
    r = gateway.raw(http_bytes(SEND_HEAD, body, drop=("authorization",)))
    assert r.status == 401, r
    assert r.json == UNAUTHORIZED


def test_send_with_the_tutorials_own_key_names_scenario_key(gateway: Gateway, scenario: dict[str, Any]) -> None:
    """Sent truly verbatim, the key is one this server never issued: a 400 naming scenarioKey."""
    r = gateway.raw(http_bytes(SEND_HEAD, SEND_BODY))
    assert r.status == 400, r
    assert r.error()["messageId"] == "BAD_REQUEST"
    assert "scenarioKey" in r.validation()


def test_whatsapp_image_example(gateway: Gateway, scenario: dict[str, Any]) -> None:
    r = gateway.raw(http_bytes(SEND_HEAD, IMAGE_BODY.replace(TUTORIAL_KEY, scenario["key"])))
    assert_one_pending(r)


def test_whatsapp_template_example(gateway: Gateway, scenario: dict[str, Any]) -> None:
    r = gateway.raw(http_bytes(SEND_HEAD, TEMPLATE_BODY.replace(TUTORIAL_KEY, scenario["key"])))
    assert_one_pending(r)


def test_get_delivery_reports_request(gateway: Gateway, scenario: dict[str, Any]) -> None:
    """Step 3 of the tutorial: ``GET /omni/1/reports`` answers 200 with a ``results`` array."""
    r = gateway.raw(http_bytes(REPORTS_REQUEST))
    assert r.status == 200, r
    assert isinstance(r.json.get("results"), list), r


def test_absolute_form_request_line_routes(gateway: Gateway, scenario: dict[str, Any]) -> None:
    """``POST http://host:port/omni/1/advanced HTTP/1.1`` (absolute-form, as proxies send) is the same route."""
    head = SEND_HEAD.replace("POST /omni/1/advanced", f"POST http://127.0.0.1:{gateway.port}/omni/1/advanced")
    assert head.startswith(f"POST http://127.0.0.1:{gateway.port}/omni/1/advanced HTTP/1.1\n")
    r = gateway.raw(http_bytes(head, SEND_BODY.replace(TUTORIAL_KEY, scenario["key"])))
    assert_one_pending(r)
    # and authentication still applies to it
    r = gateway.raw(http_bytes(head, SEND_BODY.replace(TUTORIAL_KEY, scenario["key"]), drop=("authorization",)))
    assert r.status == 401, r


def _send_at(offset: timedelta, style: str) -> str:
    when = datetime.now(UTC) + offset
    base = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    return base + {"+0000": "+0000", "+00:00": "+00:00", "Z": "Z"}[style]


@pytest.mark.parametrize("style", ["+0000", "+00:00", "Z"])
def test_send_at_accepts_each_offset_form(gateway: Gateway, scenario: dict[str, Any], style: str) -> None:
    body = {
        "scenarioKey": scenario["key"],
        "destinations": [{"to": {"phoneNumber": "41793026727"}}],
        "sms": {"text": "later"},
        "sendAt": _send_at(timedelta(days=1), style),
    }
    r = gateway.post("/omni/1/advanced", body)
    assert_one_pending(r)


@pytest.mark.parametrize("style", ["+0000", "+00:00", "Z"])
def test_send_at_offset_forms_are_really_parsed(gateway: Gateway, scenario: dict[str, Any], style: str) -> None:
    """The same forms 200 days ahead are refused for being too far: so the offset form was understood."""
    body = {
        "scenarioKey": scenario["key"],
        "destinations": [{"to": {"phoneNumber": "41793026727"}}],
        "sms": {"text": "much later"},
        "sendAt": _send_at(timedelta(days=200), style),
    }
    r = gateway.post("/omni/1/advanced", body)
    assert r.status == 400, r
    assert list(r.validation()) == ["sendAt"]


def test_send_at_with_a_non_utc_offset(gateway: Gateway, scenario: dict[str, Any]) -> None:
    """``+01:00`` (the query-param example form) and ``+0100`` are accepted too."""
    for text in ("+01:00", "+0100"):
        when = datetime.now(UTC) + timedelta(days=1)
        body = {
            "scenarioKey": scenario["key"],
            "destinations": [{"to": {"phoneNumber": "41793026727"}}],
            "sms": {"text": "later"},
            "sendAt": when.strftime("%Y-%m-%dT%H:%M:%S.000") + text,
        }
        assert_one_pending(gateway.post("/omni/1/advanced", body))
