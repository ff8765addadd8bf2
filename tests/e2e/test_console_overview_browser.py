"""The overview page in a real browser (Debian's Chromium through playwright-core, tests/e2e/console_browser/
overview.mjs) on ``omnirelay serve``: it shows the numbers, refreshes itself when messages arrive (no reload), the
range switcher changes what it counts and keeps it in the address, an error's link opens the search for it, and it
fits a phone's width. Screenshots (desktop and 390 px) go to tests/e2e/artifacts/overview/.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import ALADDIN_CONFIG, ALADDIN_KEY, WHATSAPP_SMS_FLOW, Gateway
from .test_console import BROWSER_DIR, CHROMIUM, browser  # noqa: F401 - the fixture
from .test_failover import wait_reports

ARTIFACTS = Path(__file__).parent / "artifacts" / "overview"

pytestmark = pytest.mark.timeout(180)


def test_overview_page_in_a_browser(browser: None, make_gateway: Callable[..., Gateway]) -> None:  # noqa: F811
    gw = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    # …1 undeliverable on both steps, …7 not on WhatsApp (SMS delivers), the rest delivered on WhatsApp
    numbers = [f"41791000{i:03d}" for i in range(40) if i % 10 not in (2, 3)]
    r = gw.post("/omni/1/advanced", {"destinations": [{"to": {"phoneNumber": n}} for n in numbers],
                                     "whatsApp": {"text": "Hi"}, "sms": {"text": "Hi"}})
    assert r.status == 200, r
    wait_reports(gw, len(numbers), timeout=60)
    undeliverable = sum(n.endswith("1") for n in numbers)

    env = {**os.environ, "CONSOLE_USER": "Aladdin", "CONSOLE_PASSWORD": "open sesame", "API_KEY": ALADDIN_KEY,
           "CHROMIUM": CHROMIUM}
    done = subprocess.run(["node", str(BROWSER_DIR / "overview.mjs"), gw.url, str(ARTIFACTS)], cwd=BROWSER_DIR,
                          env=env, capture_output=True, text=True, timeout=150, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser script (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    seen: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0 and "error" not in seen, f"{seen.get('error')} at {seen.get('url')}\n{done.stderr}"

    first = seen["initial"]
    assert first["range"] == "1h" and first["pressed"] == "true"
    assert first["accepted"] == str(len(numbers))
    assert first["delivered"] == f"{round((len(numbers) - undeliverable) / len(numbers) * 1000) / 10} %"
    assert "(last hour)" in first["label"]
    assert [e["text"] for e in first["errors"]] == ["EC_ABSENT_SUBSCRIBER_SM"]
    assert first["errors"][0]["href"].startswith("/console/messages?error=EC_ABSENT_SUBSCRIBER_SM&since=")
    assert first["failover"][0][:2] == ["1", "WHATSAPP"] and first["failover"][0][2] == str(len(numbers))
    assert "sandbox serves every channel" in first["connectors"]

    # seven more messages appear by themselves: the page fetched again, and was never reloaded
    assert seen["refreshed"]["accepted"] == str(len(numbers) + 7)
    assert seen["refreshed"]["refreshes"] >= 1
    assert seen["refreshed"]["sameDocument"] is True and seen["refreshed"]["navigations"] == 0

    for key, label, buckets in (("24h", "last 24 hours", 25), ("7d", "last 7 days", 7 * 24 + 1)):
        shown = seen["ranges"][key]
        assert shown["url"].endswith(f"/console/overview?range={key}")
        assert shown["accepted"] == str(len(numbers) + 7) and f"({label})" in shown["label"]
        assert shown["pressed"] == "true" and shown["lastHourPressed"] == "false"
        assert shown["buckets"] == buckets
    custom = seen["ranges"]["custom"]
    assert "range=custom" in custom["url"] and "from=2020-01-01T00%3A00" in custom["url"]
    assert custom["accepted"] == "0" and "2020-01-01 00:00" in custom["label"]
    assert seen["sameDocumentAfterSwitching"] is True
    assert seen["reloaded"] == {"range": "24h", "pressed": "true"}

    assert "error=EC_ABSENT_SUBSCRIBER_SM" in seen["errorSearch"]["url"]
    assert seen["errorSearch"]["rows"] == undeliverable

    assert seen["phoneWidth"] <= 390 + 1, seen["phoneWidth"]
    assert (ARTIFACTS / "overview-desktop.png").exists() and (ARTIFACTS / "overview-phone.png").exists()
