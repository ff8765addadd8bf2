"""The OMNI API in XML: bodies in ``application/xml`` or ``text/xml``, answers in XML when ``Accept`` asks,
with the element names of Infobip's XML examples; hostile XML refused before anything is expanded."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import ClassVar
from xml.etree import ElementTree

import pytest

from .conftest import ALADDIN_CONFIG, Gateway, GatewayPool

XML = {"Content-Type": "application/xml", "Accept": "application/xml"}
SMS_SCENARIO = """<?xml version="1.0" encoding="UTF-8"?><scenario>
  <name>SMS in XML</name>
  <flow>
    <step>
      <from>InfoSMS</from>
      <channel>SMS</channel>
    </step>
  </flow>
  <default>false</default>
</scenario>"""


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool) -> Gateway:
    return module_gateways(ALADDIN_CONFIG + "\n[limits]\nmin_validity_seconds = 1\n")


def xml(body: bytes) -> ElementTree.Element:
    return ElementTree.fromstring(body)


def scenario_key(gw: Gateway) -> str:
    r = gw.post("/omni/1/scenarios", SMS_SCENARIO, headers=XML)
    assert r.status == 200, r
    key = xml(r.body).findtext("key")
    assert key
    return key


def advanced(key: str, phone: str, extra: str = "") -> str:
    return (f"<OmniAdvancedRequest><scenarioKey>{key}</scenarioKey><destinations><destinations><to>"
            f"<phoneNumber>{phone}</phoneNumber></to></destinations></destinations>"
            f"<sms><text>Hello in XML</text>{extra}</sms></OmniAdvancedRequest>")


# --- each operation, both ways -----------------------------------------------------------------------


def test_scenarios_in_xml_both_ways(gw: Gateway) -> None:
    r = gw.post("/omni/1/scenarios", SMS_SCENARIO, headers=XML)
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("application/xml"), r.headers
    created = xml(r.body)
    assert created.tag == "scenario"
    key = created.findtext("key")
    assert key and created.findtext("name") == "SMS in XML"
    assert [(s.findtext("from"), s.findtext("channel")) for s in created.find("flow") or []] == [("InfoSMS", "SMS")]
    assert created.findtext("default") == "false" and created.findtext("defaultScenario") == "false"
    assert gw.get(f"/omni/1/scenarios/{key}").json["flow"] == [{"from": "InfoSMS", "channel": "SMS"}]

    one = gw.get(f"/omni/1/scenarios/{key}", headers={"Accept": "application/xml"})
    assert xml(one.body).tag == "scenario" and xml(one.body).findtext("key") == key

    replaced = SMS_SCENARIO.replace("SMS in XML", "renamed").replace("<default>false", "<default>true")
    r = gw.put(f"/omni/1/scenarios/{key}", replaced, headers=XML)
    assert r.status == 200, r
    assert xml(r.body).findtext("name") == "renamed" and xml(r.body).findtext("default") == "true"
    assert gw.get(f"/omni/1/scenarios/{key}").json["default"] is True

    listed = xml(gw.get("/omni/1/scenarios?isDefault=true", headers={"Accept": "application/xml"}).body)
    assert listed.tag == "scenariosResponse"
    assert [s.findtext("key") for s in listed.find("scenarios") or []] == [key]

    assert gw.delete(f"/omni/1/scenarios/{key}", headers={"Accept": "application/xml"}).status == 204
    gone = gw.get(f"/omni/1/scenarios/{key}", headers={"Accept": "application/xml"})
    assert gone.status == 404 and xml(gone.body).tag == "ApiException"
    assert xml(gone.body).findtext("requestError/serviceException/messageId") == "NOT_FOUND"


def test_text_xml_body_is_read_like_json(gw: Gateway) -> None:
    key = scenario_key(gw)
    extra = "<validityPeriod>90</validityPeriod><validityPeriodTimeUnit>SECONDS</validityPeriodTimeUnit>"
    r = gw.post("/omni/1/advanced", advanced(key, "41793026700", extra),
                headers={"Content-Type": "text/xml; charset=utf-8"})
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("application/json")  # no Accept: JSON, as for anyone
    (message,) = r.json["messages"]
    assert message["to"] == {"phoneNumber": "41793026700"}
    stored = gw.get(f"/omni/1/messages/{message['messageId']}").json
    assert stored["steps"] == [{"channel": "SMS", "from": "InfoSMS", "validitySeconds": 90.0}]


def test_send_reports_logs_and_message_in_xml(gw: Gateway) -> None:
    key = scenario_key(gw)
    r = gw.post("/omni/1/advanced", advanced(key, "41793026705"), headers=XML)
    assert r.status == 200, r
    answer = xml(r.body)
    assert answer.tag == "omniResponse"
    (message,) = answer.find("messages") or []
    assert message.tag == "message" and message.findtext("to/phoneNumber") == "41793026705"
    assert message.findtext("status/name") == "PENDING_ENROUTE"
    message_id = message.findtext("messageId")

    deadline = time.monotonic() + 30
    results: list[ElementTree.Element] = []
    while not results and time.monotonic() < deadline:
        reports = gw.get(f"/omni/1/reports?messageId={message_id}", headers={"Accept": "application/xml"})
        assert reports.status == 200 and xml(reports.body).tag == "omniReportsResponse", reports
        results = list(xml(reports.body).find("results") or [])
        time.sleep(0.1)
    (result,) = results
    assert result.tag == "result" and result.findtext("messageId") == message_id
    assert result.findtext("status/name") == "DELIVERED_TO_HANDSET"
    assert result.findtext("status/description") == "Message delivered to handset"
    assert result.findtext("error/description") == "No Error" and result.findtext("error/permanent") == "false"

    logs = xml(gw.get(f"/omni/1/logs?messageId={message_id}", headers={"Accept": "application/xml"}).body)
    assert logs.tag == "omniLogsResponse"
    assert [e.findtext("messageId") for e in logs.find("results") or []] == [message_id]

    one = gw.get(f"/omni/1/messages/{message_id}", headers={"Accept": "text/xml"})
    assert one.headers["content-type"].startswith("text/xml"), one.headers
    assert xml(one.body).tag == "message" and xml(one.body).findtext("messageId") == message_id


def test_legacy_text_send_in_xml(gw: Gateway) -> None:
    key = scenario_key(gw)
    body = (f"<request><scenarioKey>{key}</scenarioKey><destinations><destinations><to>"
            "<phoneNumber>41793026700</phoneNumber></to></destinations></destinations>"
            "<text>One text for every channel</text></request>")
    r = gw.post("/omni/1/text", body, headers=XML)
    assert r.status == 200, r
    assert xml(r.body).tag == "omniResponse"
    assert xml(r.body).findtext("messages/message/to/phoneNumber") == "41793026700"


@pytest.mark.parametrize(("accept", "answer"), [
    ("application/xml", "application/xml"),
    ("text/xml", "text/xml"),
    ("application/json, application/xml", "application/json"),
    ("application/xml;q=0.5, application/json", "application/json"),
    ("application/json;q=0.5, application/xml", "application/xml"),
    ("*/*", "application/json"),
])
def test_accept_decides(gw: Gateway, accept: str, answer: str) -> None:
    r = gw.get("/omni/1/scenarios", headers={"Accept": accept})
    assert r.status == 200, r
    assert r.headers["content-type"].startswith(answer), r.headers


def test_errors_in_xml_when_xml_is_asked(gw: Gateway) -> None:
    unauthorized = gw.get("/omni/1/scenarios", auth=None, headers={"Accept": "application/xml"})
    assert unauthorized.status == 401, unauthorized
    assert xml(unauthorized.body).findtext("requestError/serviceException/messageId") == "UNAUTHORIZED"

    key = scenario_key(gw)
    r = gw.post("/omni/1/advanced", advanced(key, "41793026700", "<validityPeriod>soon</validityPeriod>"),
                headers=XML)
    assert r.status == 400, r
    error = xml(r.body)
    assert error.tag == "ApiException"
    assert error.findtext("requestError/serviceException/messageId") == "BAD_REQUEST"
    fields = error.findall("requestError/serviceException/validationErrors/field")
    assert [f.get("name") for f in fields] == ["sms.validityPeriod"]
    assert "sms.validityPeriod" in (error.findtext("requestError/serviceException/text") or "")


@pytest.mark.parametrize("accept", ["application/xml", "application/json"])
def test_malformed_xml_is_a_400_in_the_envelope(gw: Gateway, accept: str) -> None:
    r = gw.post("/omni/1/scenarios", "<scenario><name>unclosed</scenario>",
                headers={"Content-Type": "application/xml", "Accept": accept})
    assert r.status == 400, r
    if accept == "application/json":
        assert r.error()["messageId"] == "BAD_REQUEST"
        assert "Malformed XML" in r.error()["text"] and "body" in r.validation()
    else:
        assert xml(r.body).findtext("requestError/serviceException/messageId") == "BAD_REQUEST"
        assert "Malformed XML" in (xml(r.body).findtext("requestError/serviceException/text") or "")


# --- hostile XML -------------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<scenario><name>&lol9;</name><flow><step><channel>SMS</channel></step></flow></scenario>"""


class _Hits(http.server.BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Hits.paths.append(self.path)
        body = b"<!ENTITY leaked 'from the network'>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def entity_server() -> Iterator[str]:
    """A loopback HTTP server that records every fetch an external entity would make."""
    _Hits.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _scenario_names(gw: Gateway) -> list[str]:
    return [s["name"] for s in gw.get("/omni/1/scenarios?limit=1000").json["scenarios"]]


def test_billion_laughs_is_refused_unexpanded(gw: Gateway) -> None:
    before = _scenario_names(gw)
    r = gw.post("/omni/1/scenarios", BILLION_LAUGHS, headers=XML)
    assert r.status == 400, r
    assert len(r.body) < 2000 and b"lollol" not in r.body, r  # nothing expanded into the answer
    text = xml(r.body).findtext("requestError/serviceException/text") or ""
    assert text.startswith("Malformed XML") and "DTD" in text, text
    assert _scenario_names(gw) == before  # nothing stored
    assert gw.get("/health", auth=None).status == 200


def test_external_entities_are_refused_and_never_fetched(gw: Gateway, entity_server: str) -> None:
    before = _scenario_names(gw)
    for body in (
        '<?xml version="1.0"?><!DOCTYPE s [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
        "<scenario><name>&xxe;</name><flow><step><channel>SMS</channel></step></flow></scenario>",
        f'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY xxe SYSTEM "{entity_server}/entity">]>'
        "<scenario><name>&xxe;</name><flow><step><channel>SMS</channel></step></flow></scenario>",
        f'<?xml version="1.0"?><!DOCTYPE s SYSTEM "{entity_server}/dtd">'
        "<scenario><name>x</name><flow><step><channel>SMS</channel></step></flow></scenario>",
        f'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY % p SYSTEM "{entity_server}/param"> %p;]>'
        "<scenario><name>x</name><flow><step><channel>SMS</channel></step></flow></scenario>",
    ):
        r = gw.post("/omni/1/scenarios", body, headers={"Content-Type": "application/xml"})
        assert r.status == 400, r
        assert r.error()["messageId"] == "BAD_REQUEST"
    assert _Hits.paths == []
    assert _scenario_names(gw) == before
