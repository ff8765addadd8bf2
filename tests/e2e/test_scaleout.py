"""Scale-out on PostgreSQL: several API and worker processes share one database and lose or duplicate nothing.

Each test starts real ``omnirelay api`` and ``omnirelay worker`` processes against a fresh database on this
machine's PostgreSQL server, drives them over HTTP, and checks the guarantees in the database itself
(``submissions``: one row per step a channel took).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.pg import create_database_sync, drop_database_sync

from .cluster import KEY, Cluster, check, run, scenario
from .conftest import STORE, free_port

pytestmark = [
    pytest.mark.timeout(600),
    # these start their own PostgreSQL databases: they run once, in the main pass of the suite
    pytest.mark.skipif(STORE == "postgres", reason="PostgreSQL-only tests run in the main pass"),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    url = create_database_sync("omnirelay_scale")
    c = Cluster(tmp_path, url)
    yield c
    c.stop()
    drop_database_sync(url)


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


async def test_two_apis_three_workers_20000_messages(cluster: Cluster) -> None:
    cluster.start_api(processes=2)
    ports = [free_port() for _ in range(3)]
    for n, port in enumerate(ports):
        cluster.start_worker(f"worker{n}", port)
    accepted, first, second = await run(cluster, 20_000)
    check(20_000, accepted, first, second)
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

    accepted, first, second = await run(cluster, 20_000, kill_one)
    check(20_000, accepted, first, second)
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
        key = await scenario(session, cluster.url)

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
