"""The operator console in a real browser: Debian's Chromium driven by playwright-core (tests/e2e/console_browser).

One gateway with the console (tests/e2e/console_server.py) and one browser run of the whole story: a wrong
password is refused; log in; create a WHATSAPP→SMS scenario and make it the default; send to 41793026727 with
the tester; the timeline shows WHATSAPP REJECTED then SMS DELIVERED; the search finds the message; the overview
draws its charts; the sandbox rules are listed; another account sees none of it. Screenshots go to
tests/e2e/artifacts/.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ALADDIN_CONFIG, free_port

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = Path(__file__).parent / "console_browser"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
TO = "41793026727"


def _browser_ready() -> bool:
    return (
        Path(CHROMIUM).exists()
        and shutil.which("node") is not None
        and (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").exists()
    )


@pytest.fixture(scope="module")
def browser() -> None:
    """Chromium and playwright-core, installed by scripts/install-test-peers when missing; skip only if impossible."""
    if _browser_ready():
        return
    done = subprocess.run([str(ROOT / "scripts" / "install-test-peers")], capture_output=True, text=True, timeout=600,
                          check=False)
    if not _browser_ready():
        pytest.skip(f"chromium/node/playwright-core are absent and could not be installed: {done.stderr[-600:]}")


class Console:
    """A running gateway with the console."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "omnirelay.toml").write_text(ALADDIN_CONFIG)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.console_server", "--config", str(root / "omnirelay.toml"),
             "--data-dir", str(root / "data"), "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("console server did not start")
            time.sleep(0.05)

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A gateway with the console and the default accounts (Aladdin, bob)."""
    server = Console(tmp_path_factory.mktemp("console"))
    yield server
    server.stop()


def _login_cookie(console: Console, username: str, password: str) -> str | None:
    """Log in through the login form (its cookie and form token go together); the session cookie, or None."""
    import re
    from urllib.parse import urlencode

    _, headers, page = console.request("GET", "/console/login")
    pair = headers["set-cookie"].split(";", 1)[0]
    token = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert token, page
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
    try:
        conn.request("POST", "/console/login",
                     urlencode({"username": username, "password": password, "csrf": token.group(1).decode()}),
                     {"Content-Type": "application/x-www-form-urlencoded", "Cookie": pair})
        r = conn.getresponse()
        cookies = [v.split(";", 1)[0] for k, v in r.getheaders() if k.lower() == "set-cookie"]
        status = r.status
    finally:
        conn.close()
    session = [c for c in cookies if c.startswith("omnirelay_console=")]
    return session[0] if status == 303 and session else None


def test_console_needs_a_session(console: Console) -> None:
    status, headers, _ = console.request("GET", "/console/messages")
    assert status == 303 and headers["location"].startswith("/console/login")
    assert console.request("GET", "/console/api/overview")[0] == 401
    assert console.request("GET", "/console/api/overview", headers={"Cookie": "omnirelay_console=1.QQ.9999999999.x"})[
        0
    ] == 401
    assert _login_cookie(console, "Aladdin", "wrong") is None
    assert _login_cookie(console, "nobody", "open sesame") is None
    cookie = _login_cookie(console, "Aladdin", "open sesame")
    assert cookie is not None
    status, _, body = console.request("GET", "/console/api/overview", headers={"Cookie": cookie})
    assert status == 200 and set(json.loads(body)) >= {"buckets", "perMinute", "failover", "funnel"}
    # the API itself still needs its own credentials
    assert console.request("GET", "/omni/1/scenarios", headers={"Cookie": cookie})[0] == 401


def test_console_in_a_browser(browser: None, console: Console) -> None:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    env = {**os.environ, "CONSOLE_USER": "Aladdin", "CONSOLE_PASSWORD": "open sesame",
           "CONSOLE_OTHER_USER": "bob", "CONSOLE_OTHER_PASSWORD": "bob's password", "CHROMIUM": CHROMIUM}
    done = subprocess.run(["node", str(BROWSER_DIR / "run.mjs"), console.url, str(ARTIFACTS)], cwd=BROWSER_DIR,
                          env=env, capture_output=True, text=True, timeout=90, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser script (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    seen: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0 and "error" not in seen, f"{seen.get('error')} at {seen.get('url')}\n{done.stderr}"

    assert seen["refusedCookie"] is False
    assert seen["cookie"] == {"httpOnly": True, "sameSite": "Lax", "path": "/console"}
    assert seen["defaultShown"]
    assert seen["editedFlow"].startswith("Key ") and "WHATSAPP (WhatsAppSender) → SMS (InfoSMS)" in seen["editedFlow"]
    assert "EMAIL" not in seen["editedFlow"]
    assert "flow[2].from" in seen["editError"] and "needs a sender" in seen["editError"]
    attempts = [(a["step"], a["channel"], a["state"]) for a in seen["attempts"]]
    assert attempts == [("1", "WHATSAPP", "REJECTED"), ("2", "SMS", "DELIVERED")], seen["attempts"]
    assert seen["attempts"][1]["status"] == "DELIVERED_TO_HANDSET"
    assert seen["outcome"] == "DELIVERED"
    assert any("accepted" in line for line in seen["history"]), seen["history"]
    assert seen["messageId"] in seen["searchIds"]
    assert seen["searchLinkOpens"]
    charts = {c["id"]: c for c in seen["charts"]}
    assert set(charts) == {"perMinute", "failover", "funnel"}
    assert all(c["width"] > 0 and c["height"] > 0 and c["painted"] > 0 for c in charts.values()), charts
    assert seen["rules"][0] == ["WHATSAPP", r"\+?[0-9]*7", "REJECTED", "(default)", "0"]
    assert len(seen["rules"]) == 6
    # the other account sees nothing of the first one's
    assert seen["otherStatus"] == 404
    assert seen["otherApiStatus"] == 404
    assert seen["otherSearchRows"] == 0
    assert seen["otherSeesScenario"] is False
    assert seen["foreignRequests"] == []
    assert (ARTIFACTS / "03-timeline.png").exists() and (ARTIFACTS / "05-overview.png").exists()
