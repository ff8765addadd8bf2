"""The console's overview as an operator reads it (``GET /console/api/overview`` with a console session).

* 1,500 messages through the sandbox on ``omnirelay serve`` (past the 1,000 the first overview stopped counting
  at): every range counts all of them, with the outcomes, failovers, errors and cost the sandbox rules and the
  prices make, and an error's link finds exactly the messages that ended with it;
* ``omnirelay api`` beside ``omnirelay worker`` (SQLite file or PostgreSQL, by ``OMNIRELAY_TEST_STORE``) with an
  SMPP connector to the node-smpp SMSC: the overview served by the API process shows the worker's connector
  bound, and the messages the worker finished.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from peers.smsc.harness import PASSWORD, SYSTEM_ID, Smsc
from tests.pg import create_database_sync, drop_database_sync

from .conftest import (
    ALADDIN_CONFIG,
    ALADDIN_KEY,
    STORE,
    WHATSAPP_SMS_FLOW,
    Gateway,
    app_auth,
    free_port,
    omnirelay_command,
)
from .test_failover import wait_reports

pytestmark = pytest.mark.timeout(180)

PRICES = """
[pricing]
currency = "EUR"
[[pricing.prices]]
channel = "SMS"
price = 0.05
[[pricing.prices]]
channel = "WHATSAPP"
price = 0.01
"""


def request(port: int, method: str, path: str, body: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body, headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def login(port: int, username: str = "Aladdin", password: str = "open sesame") -> str:
    """Log in through the console's form; the session cookie."""
    _, headers, page = request(port, "GET", "/console/login")
    pair = headers["set-cookie"].split(";", 1)[0]
    token = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert token, page
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/console/login",
                     urlencode({"username": username, "password": password, "csrf": token.group(1).decode()}),
                     {"Content-Type": "application/x-www-form-urlencoded", "Cookie": pair})
        r = conn.getresponse()
        cookies = [v.split(";", 1)[0] for k, v in r.getheaders() if k.lower() == "set-cookie"]
        assert r.status == 303, r.status
    finally:
        conn.close()
    return next(c for c in cookies if c.startswith("omnirelay_console="))


def overview(port: int, cookie: str, query: str = "") -> dict[str, Any]:
    status, _, body = request(port, "GET", "/console/api/overview" + query, headers={"Cookie": cookie})
    assert status == 200, body
    data: dict[str, Any] = json.loads(body)
    return data


def number(i: int) -> str:
    """Destinations whose last digit picks a sandbox rule: …1 undeliverable everywhere, …7 not on WhatsApp (SMS
    delivers); the other digits used deliver on WhatsApp (2 would expire, 3 be seen: not used)."""
    return f"4179{i // 8:06d}{'01456789'[i % 8]}"


def test_overview_counts_past_a_thousand_messages(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(ALADDIN_CONFIG + PRICES)
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    numbers = [number(i) for i in range(1500)]
    for start in range(0, 1500, 500):
        batch = [{"to": {"phoneNumber": n}} for n in numbers[start:start + 500]]
        r = gw.post("/omni/1/advanced", {"destinations": batch, "whatsApp": {"text": "Hi"}, "sms": {"text": "Hi"}})
        assert r.status == 200, r
    wait_reports(gw, 1500, timeout=120)
    undeliverable = sum(n.endswith("1") for n in numbers)
    not_on_whatsapp = sum(n.endswith("7") for n in numbers)
    delivered = 1500 - undeliverable

    cookie = login(gw.port)
    for query in ("", "?range=1h", "?range=24h", "?range=7d"):
        data = overview(gw.port, cookie, query)
        assert data["total"] == 1500, (query, data["funnel"])
        assert data["funnel"] == {"accepted": 1500, "DELIVERED": delivered, "UNDELIVERABLE": undeliverable,
                                  "EXPIRED": 0, "REJECTED": 0, "PENDING": 0}, query
        assert data["deliveredRate"] == delivered / 1500
        assert data["failover"] == [
            {"step": 1, "channel": "WHATSAPP", "tried": 1500, "failedOver": undeliverable + not_on_whatsapp,
             "rate": (undeliverable + not_on_whatsapp) / 1500},
            {"step": 2, "channel": "SMS", "tried": undeliverable + not_on_whatsapp, "failedOver": 0, "rate": 0.0},
        ]
        assert [(e["error"], e["count"]) for e in data["errors"]] == [("EC_ABSENT_SUBSCRIBER_SM", undeliverable)]
        cost = {c["channel"]: (c["messages"], c["cost"]) for c in data["cost"]["channels"]}
        whatsapp = delivered - not_on_whatsapp
        assert cost == {"WHATSAPP": (whatsapp, round(whatsapp * 0.01, 6)),
                        "SMS": (1500 - whatsapp, round((1500 - whatsapp) * 0.05, 6))}
        assert data["cost"]["currency"] == "EUR"
        assert data["latency"]["all"]["count"] == 1500 and data["latency"]["all"]["median"] is not None
        assert {c["channel"] for c in data["channelLatency"]} == {"WHATSAPP", "SMS"}
        assert sum(data["perMinute"]["accepted"]) == 1500
        assert data["range"]["key"] == (query.split("=")[1] if query else "1h")

    # the error's link: the console's search for the messages that ended with it, over the same range
    link = overview(gw.port, cookie)["errors"][0]["link"]
    assert link.startswith("/console/messages?error=EC_ABSENT_SUBSCRIBER_SM&since=")
    status, _, page = request(gw.port, "GET", link, headers={"Cookie": cookie})
    assert status == 200
    # the search counts them all (its error filter also finds a step's error: here only final ones carry it)
    assert f"<strong>{undeliverable:,} messages</strong>".encode() in page
    rows = re.findall(rb"<tr[ >]", page.split(b'id="results"', 1)[1].split(b"</table>", 1)[0])
    assert len(rows) - 1 == min(undeliverable, 50)  # the header row, then one page
    assert page.count(b'badge undeliverable">UNDELIVERABLE') == len(rows) - 1

    # a range with nothing in it; a range that cannot be read is refused, naming the parameter
    empty = overview(gw.port, cookie, "?range=custom&from=2020-01-01T00:00&to=2020-01-02T00:00")
    assert empty["funnel"]["accepted"] == 0 and empty["range"]["span"] == 3600
    status, _, body = request(gw.port, "GET", "/console/api/overview?range=custom&from=soon",
                              headers={"Cookie": cookie})
    assert status == 400 and set(json.loads(body)["errors"]) == {"from"}
    # another account sees none of it
    assert overview(gw.port, login(gw.port, "bob", "bob's password"))["funnel"]["accepted"] == 0


class Split:
    """``omnirelay api`` and ``omnirelay worker`` on one database, the worker with an SMPP connector."""

    def __init__(self, root: Path, smsc: Smsc) -> None:
        self.root = root
        self.database = create_database_sync() if STORE == "postgres" else None
        store_args = ["--database", self.database] if self.database else ["--data-dir", str(root / "data")]
        config = root / "omnirelay.toml"
        config.write_text(ALADDIN_CONFIG + f"""
[[smpp.connectors]]
name = "smsc"
system_id = "{SYSTEM_ID}"
password = "{PASSWORD}"
port = {smsc.port}
reconnect_max_seconds = 0.5
""")
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
        for name, args in (("api", ["api", "--port", str(self.port)]), ("worker", ["worker"])):
            log = open(root / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
            self.procs[name] = subprocess.Popen([*omnirelay_command(), *args, "--config", str(config), *store_args],
                                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            self._wait(name)

    def _wait(self, name: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            text = (self.root / f"{name}.log").read_text()
            if "running" in text or (name == "api" and self._healthy()):
                return
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(text)
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            return request(self.port, "GET", "/health")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.database:
            drop_database_sync(self.database)


@pytest.fixture
def split(tmp_path: Path, make_smsc: Callable[..., Smsc]) -> Iterator[Split]:
    arrangement = Split(tmp_path, make_smsc())
    yield arrangement
    arrangement.stop()


def test_split_api_and_worker_overview_shows_the_workers_connector(split: Split) -> None:
    cookie = login(split.port)
    worker_pid = split.procs["worker"].pid
    deadline = time.monotonic() + 30
    while True:
        connectors = overview(split.port, cookie)["connectors"]
        found = [c for c in connectors if c["name"] == "smsc" and c["bound"]]
        if found:
            break
        assert time.monotonic() < deadline, connectors
        time.sleep(0.2)
    smsc = found[0]
    assert smsc["channel"] == "SMS" and smsc["kind"] == "SmppChannel"
    assert smsc["process"].endswith(f":{worker_pid}")  # written by the worker, read by the API process
    assert smsc["windowSize"] >= 1 and smsc["windowInUse"] == 0 and smsc["throttles"] == 0
    assert smsc["stale"] is False and smsc["ageSeconds"] < 15

    auth = {"Authorization": app_auth(ALADDIN_KEY), "Content-Type": "application/json"}
    flow = json.dumps({"flow": [{"from": "InfoSMS", "channel": "SMS"}], "default": True})
    assert request(split.port, "POST", "/omni/1/scenarios", flow, auth)[0] == 200
    body = json.dumps({"destinations": [{"to": {"phoneNumber": f"4179300000{i}"}} for i in range(5)],
                      "sms": {"text": "Hi"}})
    assert request(split.port, "POST", "/omni/1/advanced", body, auth)[0] == 200
    deadline = time.monotonic() + 60
    while True:
        data = overview(split.port, cookie)
        sms = next(c for c in data["connectors"] if c["name"] == "smsc")
        if data["finished"] == 5 and sms["submitted"] == 5:
            break
        assert time.monotonic() < deadline, (data["funnel"], sms)
        time.sleep(0.2)
    # the SMSC reports UNDELIV for numbers ending in 0
    assert data["funnel"] == {"accepted": 5, "DELIVERED": 4, "UNDELIVERABLE": 1, "EXPIRED": 0, "REJECTED": 0,
                              "PENDING": 0}
    assert [e["count"] for e in data["errors"]] == [1]
    assert data["failover"] == [{"step": 1, "channel": "SMS", "tried": 5, "failedOver": 0, "rate": 0.0}]
    assert sms["refused"] == 0 and sms["lastError"] is None
