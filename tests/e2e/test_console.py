"""The operator console in a real browser: Debian's Chromium driven by playwright-core (tests/e2e/console_browser).

One gateway with the console (tests/e2e/console_server.py) and one browser run of the whole story: a wrong
password is refused; log in; create a WHATSAPP→SMS scenario and make it the default; send to 41793026727 with
the tester; the timeline shows WHATSAPP REJECTED then SMS DELIVERED; the search finds the message; 125 messages
of one request page through three keyset pages (forward and back) under their total, with their errors, the
error filter and a CSV export; the overview draws its charts; the sandbox rules are listed; every page fits a
390 px screen with its navigation usable, and axe-core finds no critical or serious violation on any page;
another account sees none of it. Screenshots go to tests/e2e/artifacts/.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ALADDIN_CONFIG, STORE, free_port
from tests.pg import create_database_sync, drop_database_sync

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
        and (BROWSER_DIR / "node_modules" / "axe-core" / "axe.min.js").exists()
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
        # OMNIRELAY_TEST_STORE=postgres: on a fresh PostgreSQL database
        self.database = create_database_sync() if STORE == "postgres" else None
        where = f'database = "{self.database}"\n' if self.database else ""
        (root / "omnirelay.toml").write_text(where + ALADDIN_CONFIG)
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
        output = self.proc.stdout.read().decode("utf-8", "replace")
        if self.database is not None:
            drop_database_sync(self.database)
            self.database = None
        return output


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A gateway with the console and the default accounts (Aladdin, bob)."""
    server = Console(tmp_path_factory.mktemp("console"))
    yield server
    server.stop()


def _login_cookie(console: Console, username: str, password: str) -> str | None:
    """Log in through the login form (its cookie and form token go together); the session cookie, or None."""
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
                          env=env, capture_output=True, text=True, timeout=240, check=False)
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
    _check_paging(seen)
    _check_export(seen)
    _check_phone_and_accessibility(seen)


def _bulk_ids(seen: dict[str, Any]) -> list[str]:
    return [f"{seen['bulk']}-{i:03d}" for i in range(125)]


def _check_paging(seen: dict[str, Any]) -> None:
    """The total, three pages of one instant's messages walked forward without a gap or a repeat, and back."""
    assert seen["total"] == "125 messages in the last 48 hours, newest first.", seen["total"]
    pages = [[row["Message id"] for row in page] for page in seen["pages"]]
    assert [len(p) for p in pages] == [50, 50, 25]
    walked = [mid for page in pages for mid in page]
    # one request: one acceptance time, so the order is the storing order, newest first
    assert walked == _bulk_ids(seen)[::-1]
    assert [row["Message id"] for row in seen["backPage"]] == pages[1]
    assert [row["Message id"] for row in seen["firstAgain"]] == pages[0]
    assert seen["lastPageHasNewer"] and not seen["firstHasNewer"]
    # the error column: numbers ending in 1 are undeliverable on both channels, the others delivered
    for row in (row for page in seen["pages"] for row in page):
        if row["To"].endswith("1"):
            assert row["Error"].startswith("EC_ABSENT_SUBSCRIBER_SM"), row
            assert row["Outcome"].startswith("UNDELIVERABLE"), row
        else:
            assert row["Error"] == "" and row["Outcome"].startswith("DELIVERED"), row
    assert seen["errorLinkUrl"].endswith("/console/messages?error=EC_ABSENT_SUBSCRIBER_SM")
    assert seen["errorLinkTotal"].startswith("25 messages"), seen["errorLinkTotal"]
    assert seen["errorTotal"].startswith("25 messages"), seen["errorTotal"]  # typed in lower case
    assert len(seen["errorRows"]) == 25 and all(r["To"].endswith("1") for r in seen["errorRows"])
    assert "is not an error name" in seen["badErrorAlert"]


def _check_export(seen: dict[str, Any]) -> None:
    """The downloaded CSV: its file name, header and one row for every message of the search."""
    assert re.fullmatch(r"omnirelay-messages-\d{8}-\d{6}Z\.csv", seen["csvName"]), seen["csvName"]
    with open(seen["csvPath"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["message_id"] for r in rows] == _bulk_ids(seen)[::-1]
    assert {r["bulk_id"] for r in rows} == {seen["bulk"]}
    failed = [r for r in rows if r["to"].endswith("1")]
    assert len(failed) == 25
    assert all(r["error"] == "EC_ABSENT_SUBSCRIBER_SM" and r["outcome"] == "UNDELIVERABLE" for r in failed)
    assert all(r["step_errors"] == "1 WHATSAPP EC_ABSENT_SUBSCRIBER_SM; 2 SMS EC_ABSENT_SUBSCRIBER_SM" for r in failed)
    delivered = [r for r in rows if not r["to"].endswith("1")]
    assert all(r["error"] == "" and r["channel"] == "WHATSAPP" and r["status"] == "DELIVERED_TO_HANDSET"
               for r in delivered)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["accepted_at"]) for r in rows)


def _check_phone_and_accessibility(seen: dict[str, Any]) -> None:
    """Every page at 390 px: no wider than the screen, each navigation link on screen and tappable; tables as
    cards; the skip link; no critical or serious axe-core violation on any page, at either width."""
    names = [p["page"] for p in seen["phone"]]
    assert len(names) == 10 and "login" in names and "overview" in names
    for fit in seen["phone"]:
        assert fit["innerWidth"] == 390
        assert fit["scrollWidth"] <= 390 and fit["bodyScrollWidth"] <= 390, fit
        assert all(link["onScreen"] and link["tappable"] for link in fit["links"]), fit
        if fit["page"] != "login":  # logged out, the header holds only the name
            texts = [link["text"] for link in fit["links"]]
            assert {"Overview", "Messages", "Scenarios", "Sandbox rules", "Log out"} <= set(texts), texts
    assert seen["phoneNav"] == [True, True, True, True]
    cards = seen["phoneCards"]
    assert cards["rowDisplay"] == "block" and cards["cellDisplay"] == "block", cards
    assert cards["label"] == '"Accepted (UTC)"' and cards["headerHeight"] <= 1, cards
    assert seen["skip"] == {"text": "Skip to the content", "href": "#main", "visible": True, "outline": "solid"}
    assert seen["afterSkip"] == "main"
    assert "select-name" in seen["axeSanity"]  # the checker does report what it should
    assert seen["axe"] == [], json.dumps(seen["axe"], indent=1)
    # no answer of 400 or more but for the pages that are meant to give one (never the favicon, nor a 401 of
    # anything but the refused login)
    expected = re.compile(
        r"^(401 .*/console/login|400 .*/console/scenarios/\w+|400 .*/console/messages\?(error|status)=.*"
        r"|404 .*/console/(api/)?messages/.*)$"
    )
    assert [r for r in seen["failedResponses"] if not expected.match(r)] == [], seen["failedResponses"]
    for name in ("08-messages-desktop", "09-messages-phone", *(f"phone-{name}" for name in names)):
        assert (ARTIFACTS / f"{name}.png").exists(), name


def test_favicon_needs_no_session(console: Console) -> None:
    status, headers, body = console.request("GET", "/favicon.ico")
    assert status == 200 and headers["content-type"] == "image/x-icon"
    assert body[:4] == b"\x00\x00\x01\x00" and body[22:26] == b"\x89PNG"  # an icon file holding a PNG image
    assert console.request("HEAD", "/favicon.ico")[0] == 200


def _send(console: Console, body: dict[str, Any]) -> None:
    """Send as Aladdin through an SMS scenario of its own (not the default: other tests set that)."""
    auth = {"Authorization": "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Content-Type": "application/json"}
    scenario = {"name": "export test", "flow": [{"from": "InfoSMS", "channel": "SMS"}], "default": False}
    status, _, answer = console.request("POST", "/omni/1/scenarios", json.dumps(scenario), auth)
    assert status == 200, answer
    body = {**body, "scenarioKey": json.loads(answer)["key"]}
    status, _, answer = console.request("POST", "/omni/1/advanced", json.dumps(body), auth)
    assert status == 200, answer


def test_export_is_csv_a_spreadsheet_reads_as_text(console: Console) -> None:
    """Cells that a spreadsheet would run as a formula (= + - @) come out as text; quotes, commas and line breaks
    are quoted; the export needs a session, and a bad filter gets the form's error, not a file."""
    bulk = '=HYPERLINK("http://example.com/x","click"),\nmore'
    ids = ["=1+2", "+41 79", "-2", "@SUM(A1)", "plain, \"quoted\""]
    _send(console, {"bulkId": bulk, "destinations": [{"to": {"phoneNumber": "41790000010"}, "messageId": i}
                                                      for i in ids], "sms": {"text": "hi"}})
    from urllib.parse import quote
    assert console.request("GET", f"/console/messages.csv?bulkId={quote(bulk)}")[0] == 303  # to the login form
    cookie = _login_cookie(console, "Aladdin", "open sesame")
    assert cookie is not None
    status, headers, body = console.request("GET", f"/console/messages.csv?bulkId={quote(bulk)}",
                                            headers={"Cookie": cookie})
    assert status == 200 and headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="omnirelay-messages-\d{8}-\d{6}Z\.csv"',
                        headers["content-disposition"])
    assert headers.get("transfer-encoding") == "chunked"  # streamed, not built whole
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    assert rows[0][:3] == ["accepted_at", "message_id", "bulk_id"]
    assert sorted(r[1] for r in rows[1:]) == sorted(["'=1+2", "'+41 79", "'-2", "'@SUM(A1)", 'plain, "quoted"'])
    assert {r[2] for r in rows[1:]} == {"'" + bulk}
    status, _, page = console.request("GET", "/console/messages.csv?status=SOMETIMES", headers={"Cookie": cookie})
    assert status == 400 and b"unknown status group" in page
    bob = _login_cookie(console, "bob", "bob's password")
    assert bob is not None
    status, _, theirs = console.request("GET", f"/console/messages.csv?bulkId={quote(bulk)}", headers={"Cookie": bob})
    assert status == 200 and len(list(csv.reader(io.StringIO(theirs.decode())))) == 1  # the header only
