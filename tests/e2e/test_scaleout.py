"""Scale-out on PostgreSQL: several API and worker processes share one database and lose or duplicate nothing.

Each test starts real ``omnirelay api`` and ``omnirelay worker`` processes against a fresh database on this
machine's PostgreSQL server, drives them over HTTP, and checks the guarantees in the database itself
(``submissions``: one row per step a channel took).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.pg import create_database_sync, drop_database_sync

from .conftest import STORE, free_port, omnirelay_command

pytestmark = [
    pytest.mark.timeout(600),
    # these start their own PostgreSQL databases: they run once, in the main pass of the suite
    pytest.mark.skipif(STORE == "postgres", reason="PostgreSQL-only tests run in the main pass"),
]

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
    """API and worker processes on one database."""

    def __init__(self, root: Path, database: str) -> None:
        self.root = root
        self.database = database
        self.config = root / "omnirelay.toml"
        self.config.write_text(CONFIG)
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        cmd = [*omnirelay_command(), *args, "--config", str(self.config), "--database", self.database]
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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    url = create_database_sync("omnirelay_scale")
    c = Cluster(tmp_path, url)
    yield c
    c.stop()
    drop_database_sync(url)


async def _scenario(session: aiohttp.ClientSession, url: str) -> str:
    async with session.post(f"{url}/omni/1/scenarios", json={"flow": FLOW, "default": True}) as r:
        assert r.status == 200, await r.text()
        key: str = (await r.json())["key"]
        return key


async def _send(session: aiohttp.ClientSession, url: str, key: str, batch: int, size: int) -> list[str]:
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


async def _poll(session: aiohttp.ClientSession, url: str, got: list[dict[str, Any]], stop: asyncio.Event) -> None:
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


async def _run(
    cluster: Cluster, total: int, during: Any = None
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    headers = {"Authorization": f"App {KEY}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=32)) as session:
        key = await _scenario(session, cluster.url)
        stop = asyncio.Event()
        first: list[dict[str, Any]] = []
        second: list[dict[str, Any]] = []
        pollers = [
            asyncio.create_task(_poll(session, cluster.url, first, stop)),
            asyncio.create_task(_poll(session, cluster.url, second, stop)),
        ]
        sends = asyncio.gather(*(_send(session, cluster.url, key, b, 100) for b in range(total // 100)))
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


async def _duplicate_submissions(database: str) -> int:
    conn = await asyncpg.connect(database)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM (SELECT message, step FROM submissions GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
        )
    finally:
        await conn.close()


def _check(total: int, accepted: list[str], first: list[dict[str, Any]], second: list[dict[str, Any]]) -> None:
    assert len(set(accepted)) == total
    reported = Counter(r["messageId"] for r in first + second)
    assert set(reported) == set(accepted), "every accepted message has a final report"
    assert max(reported.values()) == 1, "no report is returned twice, to either poller"
    assert {r["channel"] for r in first + second} == {"SMS"}
    assert first and second, "both pollers got a share"


async def test_two_apis_three_workers_20000_messages(cluster: Cluster) -> None:
    cluster.start_api(processes=2)
    ports = [free_port() for _ in range(3)]
    for n, port in enumerate(ports):
        cluster.start_worker(f"worker{n}", port)
    accepted, first, second = await _run(cluster, 20_000)
    _check(20_000, accepted, first, second)
    assert await _duplicate_submissions(cluster.database) == 0
    # every worker serves its operations port; together they submitted each message's two steps
    submitted = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as ready:
            assert ready.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith("omnirelay_submits_total{"):
                    submitted += float(line.rsplit(" ", 1)[1])
    assert submitted == 40_000


async def test_worker_killed_mid_run(cluster: Cluster) -> None:
    cluster.start_api(processes=2)
    for n in range(3):
        cluster.start_worker(f"worker{n}")

    async def kill_one() -> None:
        await asyncio.sleep(1.5)
        cluster.kill9("worker0")

    accepted, first, second = await _run(cluster, 20_000, kill_one)
    _check(20_000, accepted, first, second)
    assert await _duplicate_submissions(cluster.database) == 0


def _pg(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=True, timeout=60)


async def test_database_restart_mid_run(cluster: Cluster) -> None:
    cluster.start_api(processes=1)
    cluster.start_worker("worker0")
    cluster.start_worker("worker1")
    answers: Counter[int] = Counter()
    bad_envelopes: list[str] = []
    acknowledged: list[str] = []

    async def restart() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(_pg, "stop")
        await asyncio.sleep(2.0)
        await asyncio.to_thread(_pg, "start")

    headers = {"Authorization": f"App {KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        key = await _scenario(session, cluster.url)

        async def trickle() -> None:
            for i in range(400):
                body = {
                    "scenarioKey": key,
                    "destinations": [{"to": {"phoneNumber": f"41790{i:06d}"}}],
                    "whatsApp": {"text": "hi"},
                    "sms": {"text": "hello"},
                }
                try:
                    async with session.post(f"{cluster.url}/omni/1/advanced", json=body) as r:
                        answers[r.status] += 1
                        data = await r.json(content_type=None)
                        if r.status == 200:
                            acknowledged.append(data["messages"][0]["messageId"])
                        elif "requestError" not in data:
                            bad_envelopes.append(str(data))
                except aiohttp.ClientError as exc:
                    bad_envelopes.append(repr(exc))
                await asyncio.sleep(0.01)

        await asyncio.gather(trickle(), restart())
        assert answers[200] > 0 and set(answers) <= {200, 500, 503}, answers
        assert answers[503] + answers[500] > 0, "the outage was seen by some requests"
        assert bad_envelopes == []
        got: list[str] = []
        deadline = time.monotonic() + 120
        while set(acknowledged) - set(got) and time.monotonic() < deadline:
            async with session.get(f"{cluster.url}/omni/1/reports?limit=1000") as r:
                if r.status == 200:
                    got.extend(x["messageId"] for x in (await r.json())["results"])
            await asyncio.sleep(0.2)
        assert set(acknowledged) <= set(got), "every acknowledged message reached its final report"
        assert len(got) == len(set(got))
