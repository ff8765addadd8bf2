"""PostgreSQL high availability: the gateway on a primary with a synchronous streaming standby, through one libpq
multi-host URL (``target_session_attrs=read-write``). The primary dies under load and the standby is promoted:
the gateway moves to it by itself, every message answered 200 is there and reported exactly once, no step is
submitted twice, and while no server can write the answers are 503 in the envelope, never 500."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from bench.lib.pg import Pair
from tests.e2e.conftest import STORE, Gateway

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(STORE != "postgres", reason="a PostgreSQL test: runs in the PostgreSQL pass"),
]

DATABASE = "omnirelay_ha"


@pytest.fixture
def pair() -> Iterator[Pair]:
    made = Pair()
    try:
        yield made.create()
    finally:
        made.drop()


def test_primary_dies_standby_promoted_nothing_lost_nothing_twice(
    pair: Pair, make_gateway: Callable[..., Gateway]
) -> None:
    pair.create_database(DATABASE)
    gw = make_gateway(start=False)
    gw.drop_database()  # not the test server's: the pair's
    gw.database = pair.dsn(DATABASE)
    gw.cli("migrate")
    gw.start()
    gw.create_scenario(default=True)
    run = uuid.uuid4().hex[:8]
    answers: Counter[int] = Counter()
    accepted: list[str] = []
    bad: list[tuple[int, str]] = []
    after_death: list[float] = []  # when each 200 after the primary's death came
    died = threading.Event()
    death_at: list[float] = []

    async def load(seconds_after_recovery: float) -> None:
        async with gw.session() as session:

            async def sender(w: int) -> None:
                n = 0
                while True:
                    if after_death and time.monotonic() - after_death[0] > seconds_after_recovery:
                        return
                    n += 1
                    message_id = f"{run}-{w}-{n}"
                    body = {"destinations": [{"messageId": message_id, "to": {"phoneNumber": "41793026726"}}],
                            "sms": {"text": "hi"}}
                    sent_after_death = died.is_set()
                    try:
                        async with session.post("/omni/1/advanced", json=body) as r:
                            text = await r.text()
                    except OSError as exc:  # the gateway itself must never drop a connection
                        bad.append((0, repr(exc)))
                        continue
                    answers[r.status] += 1
                    if r.status == 200:
                        accepted.append(message_id)
                        if sent_after_death:
                            after_death.append(time.monotonic())
                    elif r.status == 503:
                        assert "SERVICE_UNAVAILABLE" in text, text
                        await asyncio.sleep(0.05)
                    else:
                        bad.append((r.status, text))

            async def chaos() -> None:
                while len(accepted) < 300:
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(pair.kill_primary)
                death_at.append(time.monotonic())
                died.set()
                await asyncio.to_thread(pair.promote_standby)

            await asyncio.wait_for(asyncio.gather(chaos(), *(sender(w) for w in range(8))), timeout=120)

    asyncio.run(load(seconds_after_recovery=3.0))
    assert not bad, (answers, bad[:5])
    assert after_death, "no request was accepted after the standby's promotion"
    print(f"from the primary's death to the first accepted request: {after_death[0] - death_at[0]:.2f} s; {answers}")

    # every 200 is on the new primary (synchronous replication: acknowledged means on both servers)
    stored = {r[0] for r in pair.fetch(DATABASE, f"SELECT message_id FROM messages WHERE message_id LIKE '{run}-%'")}
    assert set(accepted) <= stored
    # and each stored message is reported exactly once
    reports: Counter[str] = Counter()
    deadline = time.monotonic() + 60
    while set(reports) < stored and time.monotonic() < deadline:
        r = gw.get("/omni/1/reports?limit=1000")
        assert r.status == 200, r
        reports.update(x["messageId"] for x in r.json["results"] if x["messageId"].startswith(run))
        time.sleep(0.2)
    missing = stored - set(reports)
    if missing:
        (gw.root / "gateway.log").write_text(gw.output)
    assert not missing, (f"{len(missing)} of {len(stored)} stored messages unreported; see {gw.root}/gateway.log")
    assert set(reports) == stored
    assert max(reports.values()) == 1
    # no step of any message was submitted twice
    steps = pair.fetch(DATABASE, "SELECT count(*), count(DISTINCT (message, step)) FROM submissions")
    assert steps[0][0] == steps[0][1] >= len(stored)
    assert gw.get("/readyz").status == 200
    where = gw.output.find("Traceback")
    assert where < 0, gw.output[max(0, where - 500) : where + 3000]
