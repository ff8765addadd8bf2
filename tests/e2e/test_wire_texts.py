"""Statuses and errors in answers carry Infobip's short wire texts, never its documentation paragraphs."""

from __future__ import annotations

import time
from typing import Any

from .conftest import ALADDIN_CONFIG, GatewayPool


def _final_report(gw: Any, message_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        results = gw.get(f"/omni/1/reports?messageId={message_id}").json["results"]
        if results:
            report: dict[str, Any] = results[0]
            return report
        time.sleep(0.1)
    raise AssertionError(f"no report for {message_id}")


def test_reports_and_logs_carry_the_short_texts(make_gateway: GatewayPool) -> None:
    gw = make_gateway(ALADDIN_CONFIG + "\n[limits]\nmin_validity_seconds = 1\n")
    whatsapp = gw.create_scenario([{"channel": "WHATSAPP", "from": "WhatsAppSender"}])["key"]
    sms = gw.create_scenario([{"channel": "SMS", "from": "InfoSMS"}])["key"]
    # the sandbox: a number ending in 7 is not a WhatsApp user; one ending in 2 never gets a receipt
    rejected = gw.post("/omni/1/advanced", {"scenarioKey": whatsapp, "whatsApp": {"text": "Hi"},
                                            "destinations": [{"to": {"phoneNumber": "41793026727"}}]})
    expired = gw.post("/omni/1/advanced", {"scenarioKey": sms, "sms": {"text": "Hi", "validityPeriod": 1,
                                                                        "validityPeriodTimeUnit": "SECONDS"},
                                           "destinations": [{"to": {"phoneNumber": "41793026722"}}]})
    assert rejected.status == 200 and expired.status == 200, (rejected, expired)
    assert rejected.json["messages"][0]["status"]["description"] == "Message sent to next instance"

    report = _final_report(gw, rejected.json["messages"][0]["messageId"])
    assert (report["status"]["name"], report["status"]["description"]) == (
        "REJECTED_DESTINATION", "Invalid destination address")
    assert (report["error"]["name"], report["error"]["description"]) == ("EC_UNKNOWN_USER", "Unknown User")

    report = _final_report(gw, expired.json["messages"][0]["messageId"])
    assert (report["status"]["name"], report["status"]["description"]) == ("EXPIRED_EXPIRED", "Message expired")
    assert (report["error"]["name"], report["error"]["description"]) == ("EC_VALIDITY_EXPIRED", "Validity Expired")

    (log,) = gw.get(f"/omni/1/logs?messageId={expired.json['messages'][0]['messageId']}").json["results"]
    assert log["status"]["description"] == "Message expired"
