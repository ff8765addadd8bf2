"""The client commands as a developer uses them against a running gateway: scenarios, send, logs, reports."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import ALADDIN_CONFIG, ALADDIN_KEY, Gateway, GatewayPool


def run(gw: Gateway, *args: str, check: bool = True) -> str:
    done = gw.cli(*args, "--url", gw.url, "--api-key", ALADDIN_KEY, locate=False, check=check)
    return done.stdout + done.stderr


def test_scenarios_send_logs_reports(make_gateway: GatewayPool, tmp_path: Path) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    created = json.loads(run(gw, "scenarios", "create", "WHATSAPP:WhatsAppSender", "SMS:InfoSMS", "--name", "cli",
                             "--default", "--json"))
    assert created["default"] is True
    assert created["flow"] == [{"from": "WhatsAppSender", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}]
    listing = run(gw, "scenarios", "list")
    assert created["key"] in listing and "WHATSAPP(WhatsAppSender) -> SMS(InfoSMS)" in listing
    assert json.loads(run(gw, "scenarios", "show", created["key"], "--json"))["name"] == "cli"

    # one number that is not a WhatsApp user in the sandbox, one that is
    out = json.loads(run(gw, "send", "--to", "41793026727", "--to", "41793026720", "--text", "hello",
                         "--wait", "10", "--json"))
    assert len(out["messages"]) == 2
    assert {o["to"]: o["channel"] for o in out["outcomes"]} == {"41793026727": "SMS", "41793026720": "WHATSAPP"}

    csv_file = tmp_path / "to.csv"
    csv_file.write_text("to,name\n41790000001,a\n41790000009,b\n")
    done = gw.cli("send", "--csv", str(csv_file), "--text", "hi", "--wait", "10", "--url", gw.url,
                  "--api-key", ALADDIN_KEY, locate=False, check=False)
    summary = done.stdout
    assert done.returncode == 1, done  # one of the two was not delivered
    assert "2 accepted, 2 finished" in summary and "1 not delivered" in summary
    assert "UNDELIVERABLE_NOT_DELIVERED" in summary and "DELIVERED_TO_HANDSET" in summary

    logs = json.loads(run(gw, "logs", "--limit", "10", "--json"))
    assert len(logs) == 4
    # waiting read the logs: the reports are still there, once
    reports = json.loads(run(gw, "reports", "--limit", "100", "--json"))
    assert len(reports) == 4
    assert json.loads(run(gw, "reports", "--json")) == []


def test_errors_are_plain_sentences(make_gateway: GatewayPool) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(default=True)
    bad = gw.cli("send", "--to", "41793026720", "--text", "x" * 5000, "--url", gw.url, "--api-key", ALADDIN_KEY,
                 locate=False, check=False)
    assert bad.returncode == 1
    assert "sms.text" in bad.stderr
    refused = gw.cli("send", "--to", "12", "--text", "x", "--url", gw.url, "--api-key", ALADDIN_KEY, locate=False,
                     check=False)
    assert refused.returncode == 1  # nothing was accepted
    assert "REJECTED_DESTINATION" in refused.stdout and "0 accepted, 1 rejected" in refused.stdout
    unauthorized = gw.cli("logs", "--url", gw.url, "--api-key", "wrong", locate=False, check=False)
    assert unauthorized.returncode == 1 and "401" in unauthorized.stderr
    nobody = gw.cli("logs", "--url", "http://127.0.0.1:9", "--api-key", "k", locate=False, check=False)
    assert nobody.returncode == 1 and "cannot reach" in nobody.stderr
