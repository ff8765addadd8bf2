"""PostgreSQL connections cut under load (``pg_terminate_backend`` of the gateway's connections, again and again, on
its own database): every answer is a 200 or a 503 in the envelope, never a 500, and every message answered 200
is stored."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Gateway
from tests.pg import create_database_sync, fetch_sync

pytestmark = pytest.mark.timeout(180)


def _cut_connections(database: str, stop: threading.Event, cuts: list[int]) -> None:
    name = database.rpartition("/")[2]
    while not stop.is_set():
        rows = fetch_sync(
            database,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = ?"
            " AND pid <> pg_backend_pid()",
            name,
        )
        cuts.append(int(rows[0][0]))
        time.sleep(0.15)


def test_cut_connections_give_503_never_500(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(start=False)
    if gw.database is None:
        gw.database = create_database_sync()
    gw.start()
    gw.create_scenario(default=True)
    run = uuid.uuid4().hex[:8]
    statuses: Counter[int] = Counter()
    accepted: list[str] = []
    bad: list[tuple[int, str]] = []

    async def load(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        async with gw.session() as session:

            async def worker(w: int) -> None:
                n = 0
                while time.monotonic() < deadline:
                    n += 1
                    message_id = f"{run}-{w}-{n}"
                    body = {
                        "destinations": [{"messageId": message_id, "to": {"phoneNumber": "41793026726"}}],
                        "sms": {"text": "hi"},
                    }
                    for method, path, payload in (
                        ("POST", "/omni/1/advanced", body),
                        ("GET", "/omni/1/logs?limit=5", None),
                        ("GET", "/omni/1/scenarios", None),
                    ):
                        async with session.request(method, path, json=payload) as r:
                            text = await r.text()
                            statuses[r.status] += 1
                            if r.status not in (200, 503):
                                bad.append((r.status, text))
                            elif r.status == 503:
                                assert "SERVICE_UNAVAILABLE" in text, text
                            elif method == "POST":
                                accepted.append(message_id)

            await asyncio.gather(*(worker(w) for w in range(12)))

    stop = threading.Event()
    cuts: list[int] = []
    assert gw.database is not None
    cutter = threading.Thread(target=_cut_connections, args=(gw.database, stop, cuts))
    cutter.start()
    try:
        asyncio.run(load(8.0))
    finally:
        stop.set()
        cutter.join()
    assert sum(cuts) >= 10, cuts  # connections were really cut, many times
    assert statuses[503] > 0, statuses
    assert not bad, (statuses, bad[:5])
    assert statuses[200] > 0, statuses
    stored = {r[0] for r in gw.query("SELECT message_id FROM messages WHERE message_id LIKE ?", f"{run}-%")}
    assert set(accepted) <= stored  # nothing answered 200 was lost
    assert gw.get("/readyz").status == 200
    assert "GENERAL_ERROR" not in gw.output
