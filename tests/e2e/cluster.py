"""A cluster of ``omnirelay api`` and ``omnirelay worker`` processes for the scale-out tests, on PostgreSQL
(``test_scaleout.py``) or on one SQLite file (``test_sqlite_split.py``), and the traffic both drive through it:
batches of 100 WhatsApp → SMS messages, reports pulled by two pollers at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import free_port, omnirelay_command

KEY = "scaleout-key"
CONFIG = f"""
[[accounts]]
username = "scale"
password = "scale"
api_keys = ["{KEY}"]

[engine]
batch_size = 500

[[sandbox.rules]]
channel = "WHATSAPP"
outcome = "REJECTED"
"""
FLOW = [{"from": "WA", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}]


class Cluster:
    """``omnirelay api`` and ``omnirelay worker`` processes on one database: a PostgreSQL URL, or else the SQLite
    file in ``root/data``."""

    def __init__(self, root: Path, database: str | None = None) -> None:
        self.root = root
        self.database = database
        self.store_args = ["--database", database] if database else ["--data-dir", str(root / "data")]
        self.config = root / "omnirelay.toml"
        self.config.write_text(CONFIG)
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        cmd = [*omnirelay_command(), *args, "--config", str(self.config), *self.store_args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def start_api(self, processes: int) -> None:
        self._start("api", "api", "--port", str(self.port), "--processes", str(processes))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError((self.root / "api.log").read_text())

    def start_worker(self, name: str, port: int | None = None) -> None:
        self._start(name, "worker", *(["--port", str(port)] if port is not None else []))
        deadline = time.monotonic() + 30
        while "worker running" not in (self.root / f"{name}.log").read_text():
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.root / f"{name}.log").read_text())
            time.sleep(0.05)

    def kill9(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()


async def scenario(session: aiohttp.ClientSession, url: str) -> str:
    async with session.post(f"{url}/omni/1/scenarios", json={"flow": FLOW, "default": True}) as r:
        assert r.status == 200, await r.text()
        key: str = (await r.json())["key"]
        return key


async def send(session: aiohttp.ClientSession, url: str, key: str, batch: int, size: int) -> list[str]:
    body = {
        "scenarioKey": key,
        "destinations": [
            {"to": {"phoneNumber": f"4179{batch:05d}{i:03d}"}, "messageId": f"m-{batch}-{i}"} for i in range(size)
        ],
        "whatsApp": {"text": "hi"},
        "sms": {"text": "hello"},
    }
    for _ in range(20):  # a request cut by a failure is sent again: the client message ids make that safe
        try:
            async with session.post(f"{url}/omni/1/advanced", json=body) as r:
                if r.status == 200:
                    return [m["messageId"] for m in (await r.json())["messages"]]
                assert r.status >= 500, await r.text()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"batch {batch} was never accepted")


async def poll(session: aiohttp.ClientSession, url: str, got: list[dict[str, Any]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with session.get(f"{url}/omni/1/reports?limit=1000") as r:
                if r.status == 200:
                    results = (await r.json())["results"]
                    got.extend(results)
                    if results:
                        continue
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)


async def run(
    cluster: Cluster, total: int, during: Any = None
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    headers = {"Authorization": f"App {KEY}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=32)) as session:
        key = await scenario(session, cluster.url)
        stop = asyncio.Event()
        first: list[dict[str, Any]] = []
        second: list[dict[str, Any]] = []
        pollers = [
            asyncio.create_task(poll(session, cluster.url, first, stop)),
            asyncio.create_task(poll(session, cluster.url, second, stop)),
        ]
        sends = asyncio.gather(*(send(session, cluster.url, key, b, 100) for b in range(total // 100)))
        if during is not None:
            await during()
        accepted = [m for batch in await sends for m in batch]
        deadline = time.monotonic() + 240
        while len(first) + len(second) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything extra (a duplicate) would arrive now
        stop.set()
        await asyncio.gather(*pollers)
        return accepted, first, second


def check(
    total: int,
    accepted: list[str],
    first: list[dict[str, Any]],
    second: list[dict[str, Any]],
    both_pollers: bool = True,
) -> None:
    assert len(set(accepted)) == total
    reported = Counter(r["messageId"] for r in first + second)
    assert set(reported) == set(accepted), "every accepted message has a final report"
    assert max(reported.values()) == 1, "no report is returned twice, to either poller"
    assert {r["channel"] for r in first + second} == {"SMS"}
    if both_pollers:  # several API processes: each poller's requests may land on a different one
        assert first and second, "both pollers got a share"
