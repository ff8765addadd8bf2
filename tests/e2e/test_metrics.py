"""What an operator scrapes and probes: /metrics in Prometheus format, /healthz, /readyz, JSON logs."""

from __future__ import annotations

import json
import re
import time

from .conftest import ALADDIN_CONFIG, WHATSAPP_SMS_FLOW, Gateway, GatewayPool


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$", line)
        if match and match.group(1) == name:
            found = ",".join(sorted((match.group(3) or "").split(","))) if match.group(3) else ""
            if found == wanted:
                return float(match.group(4))
    return 0.0


def test_metrics_count_what_flowed(make_gateway: GatewayPool) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    before = gw.get("/metrics", auth=None)
    assert before.status == 200 and before.headers["content-type"].startswith("text/plain")
    sent = gw.post("/omni/1/advanced", {"destinations": [{"to": {"phoneNumber": "41793026727"}},
                                                         {"to": {"phoneNumber": "41793026720"}}],
                                        "whatsApp": {"text": "hi"}, "sms": {"text": "hello"}})
    assert sent.status == 200, sent
    deadline = time.monotonic() + 10
    while True:
        text = gw.get("/metrics", auth=None).text
        # the engine counts inside its transaction, so the counters may run a moment ahead of the queue
        finished = metric(text, "omnirelay_final_reports_total", channel="SMS", status="DELIVERED_TO_HANDSET") >= 1
        if finished and metric(text, "omnirelay_queue_depth") == 0:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert metric(text, "omnirelay_accepted_messages_total") == 2
    # 41793026727 is not a WhatsApp user in the sandbox: WhatsApp, then SMS; 41793026720 is delivered on WhatsApp
    assert metric(text, "omnirelay_submits_total", channel="WHATSAPP", connector="sandbox") == 2
    assert metric(text, "omnirelay_submits_total", channel="SMS", connector="sandbox") == 1
    assert metric(text, "omnirelay_outcomes_total", channel="WHATSAPP", outcome="REJECTED") == 1
    assert metric(text, "omnirelay_failovers_total", channel="WHATSAPP", step="1") == 1
    assert metric(text, "omnirelay_final_reports_total", channel="WHATSAPP", status="DELIVERED_TO_HANDSET") == 1
    assert metric(text, "omnirelay_http_request_seconds_count", method="POST", route="/omni/1/advanced",
                  status="200") == 1
    assert "omnirelay_job_lag_seconds" in text


def test_health_and_readiness(make_gateway: GatewayPool) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    assert gw.get("/healthz", auth=None).json == {"status": "ok"}
    ready = gw.get("/readyz", auth=None)
    assert ready.status == 200 and ready.json == {"status": "ready"}


def test_json_logs(make_gateway: GatewayPool) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG + '\nlog_format = "json"\n', start=False)
    gw.set_config('log_format = "json"\n' + ALADDIN_CONFIG)
    gw.start()
    gw.stop()
    lines = [line for line in gw.outputs[-1].splitlines() if line.startswith("{")]
    assert lines, gw.outputs[-1]
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)
