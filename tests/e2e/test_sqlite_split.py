"""The embedded SQLite store split in two processes: ``omnirelay api`` accepts, ``omnirelay worker`` runs the
engine, both on one file. Nothing is lost or sent twice, also when the worker is killed, and the file refuses
a second API process or a second engine.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, check, run
from .conftest import STORE, free_port, omnirelay_command

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(STORE == "postgres", reason="SQLite only: runs once, in the main pass"),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def _steps_taken_twice(cluster: Cluster) -> int:
    with sqlite3.connect(cluster.root / "data" / "omnirelay.db") as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM (SELECT message, step FROM submissions GROUP BY 1, 2 HAVING count(*) > 1)"
            ).fetchone()[0]
        )


async def test_api_and_worker_share_one_file(cluster: Cluster) -> None:
    cluster.start_api(processes=1)
    port = free_port()
    cluster.start_worker("worker", port)
    accepted, first, second = await run(cluster, 5_000)
    check(5_000, accepted, first, second, both_pollers=False)
    assert _steps_taken_twice(cluster) == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        submits = [
            float(line.rsplit(" ", 1)[1])
            for line in answer.read().decode().splitlines()
            if line.startswith("omnirelay_submits_total{")
        ]
    assert sum(submits) == 10_000, "the worker took both steps (WhatsApp, then SMS) of every message"


async def test_worker_killed_and_started_again(cluster: Cluster) -> None:
    cluster.start_api(processes=1)
    cluster.start_worker("worker")

    async def kill_and_restart() -> None:
        await asyncio.sleep(1.0)
        cluster.kill9("worker")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.start_worker, "worker")

    accepted, first, second = await run(cluster, 5_000, kill_and_restart)
    check(5_000, accepted, first, second, both_pollers=False)
    assert _steps_taken_twice(cluster) == 0


def _refused(cluster: Cluster, *args: str) -> str:
    done = subprocess.run(
        [*omnirelay_command(), *args, "--config", str(cluster.config), *cluster.store_args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done
    return done.stderr


def test_one_api_process_and_one_engine_per_file(cluster: Cluster) -> None:
    cluster.start_api(processes=1)
    cluster.start_worker("worker")
    assert "already runs the engine" in _refused(cluster, "worker")
    assert "already accepts messages" in _refused(cluster, "serve", "--port", str(free_port()))
    assert "already accepts messages" in _refused(cluster, "api", "--port", str(free_port()))
    assert "several API processes need PostgreSQL" in _refused(cluster, "api", "--processes", "2")
