"""The console overview's rollups on each real store: for a mixed set of messages walked by the real engine on the
sandbox (delivered, failed over, undeliverable, expired, seen, refused at acceptance; WhatsApp, SMS and e-mail;
accepted on both sides of an hour boundary; two accounts), what the overview reports is exactly what the stored
messages say, counted here directly from them. It stays so after the retention purge removed the messages, and
a store upgraded from before the rollups (the migration's backlog) gets the same numbers from the backfill.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import Any

import msgspec
import pytest

from omnirelay.connectors.sandbox.connector import Sandbox
from omnirelay.console import stats
from omnirelay.domain import rollups
from omnirelay.domain.channels import Channel
from omnirelay.domain.message import initial_state, rejected_state, state_decoder
from omnirelay.domain.numbering import MccMncTable
from omnirelay.domain.pricing import PriceList
from omnirelay.domain.reports import Tariffs
from omnirelay.engine.rollup_backfill import backfill
from omnirelay.engine.worker import Engine, EngineSettings
from omnirelay.store.base import LogQuery, NewMessage, Store
from omnirelay.store.postgres import PostgresStore
from omnirelay.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(120)

PRICES = {"SMS": 0.05, "WHATSAPP": 0.01, "EMAIL": 0.001}
HOUR = 3600
NOW = time.time()
BOUNDARY = (int(NOW) // HOUR - 2) * HOUR
"""An hour boundary two hours back: messages are accepted 30 s before and 30 s after it."""
VALIDITY_S = 1.0


def tariffs() -> Tariffs:
    return Tariffs(PriceList("EUR", 0.0, [(c, None, p) for c, p in PRICES.items()]), MccMncTable({}))


def payload(*channels: str) -> bytes:
    content = {"whatsApp": {"text": "Hi"}, "sms": {"text": "Hi"}, "email": {"subject": "Hi", "text": "Hi"}}
    steps = [{"channel": c, "sender": "Info" if c != "EMAIL" else "a@b.example", "validity_s": VALIDITY_S}
             for c in channels]
    return msgspec.json.encode({"steps": steps, "content": content, "options": {}})


def destination(to: str, at: float, refused: bool = False) -> NewMessage:
    to_json = msgspec.json.encode({"emailAddress": to} if "@" in to else {"phoneNumber": to})
    state = (
        rejected_state(at, "REJECTED_DESTINATION", "EC_INVALID_DESTINATION_ADDRESS", "not a number")
        if refused else initial_state(at, None)
    )
    return NewMessage(
        message_id=f"{to}-{at}",
        to_json=to_json,
        content_hash=hashlib.blake2b(to_json, digest_size=16).digest(),
        state=state,
        supplied=False,
        address=to,
        rejected=refused,
    )


async def send(store: Store, account: int, at: float, flow: tuple[str, ...], *to: str, refused: str = "") -> None:
    messages = [destination(t, at) for t in to] + ([destination(refused, at, True)] if refused else [])
    await store.accept(account, payload(*flow), None, messages, at, at)


async def fill(store: Store) -> tuple[int, int]:
    """The mixed set, walked to the end by the engine; returns the two accounts' ids."""
    a = (await store.create_account("a", None, "s", "cli")).id
    b = (await store.create_account("b", None, "s", "cli")).id
    before, after = BOUNDARY - 30, BOUNDARY + 30
    # default sandbox rules: …7 WhatsApp refuses (not a user), …1 undeliverable, …2 silent (expires), …3 seen
    await send(store, a, before, ("WHATSAPP", "SMS"), "41790000000", "41790000007", "41790000001", "41790000002",
               "41790000003", "41790000010", refused="12")
    await send(store, a, after, ("SMS",), "41790000020", "41790000021", "41790000030")
    await send(store, a, after, ("EMAIL",), "x@example.com", "bounce@example.com")
    await send(store, b, before, ("SMS",), "41790000040", "41790000041")
    await send(store, b, after, ("WHATSAPP", "SMS"), "41790000047")
    engine = Engine(store, {c.value: Sandbox(None) for c in Channel}, tariffs(), EngineSettings(batch_size=7))
    deadline = time.monotonic() + 60
    while not await all_done(store, (a, b)):
        assert time.monotonic() < deadline, "the engine did not finish the messages"
        if not await engine.cycle():
            await asyncio.sleep(0.05)
    return a, b


async def views(store: Store, account: int) -> list[Any]:
    return await store.logs(account, LogQuery(since=0, limit=10_000))


async def all_done(store: Store, accounts: tuple[int, ...]) -> bool:
    for account in accounts:
        if any(state_decoder.decode(v.state).phase != "DONE" for v in await views(store, account)):
            return False
    return True


def nearest_rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def direct(found: list[Any], since: float, until: float) -> dict[str, Any]:
    """The overview's numbers counted from the messages themselves (independently of the rollups' code)."""
    outcomes = {"DELIVERED": 0, "UNDELIVERABLE": 0, "EXPIRED": 0, "REJECTED": 0}
    accepted = 0
    errors: dict[str, int] = {}
    steps: dict[tuple[int, str], list[int]] = {}
    cost: dict[str, float] = {}
    to_final: list[float] = []
    delivered_on: dict[str, list[float]] = {}
    for view in found:
        if not since <= view.created_at < until:
            continue
        accepted += 1
        state = state_decoder.decode(view.state)
        outcomes[state.status.split("_")[0]] += 1
        if state.error != "NO_ERROR":
            errors[state.error] = errors.get(state.error, 0) + 1
        made = [x for x in state.attempts if x.state not in ("SKIPPED", "CANCELLED", "PENDING")]
        channel = state.channel or "-"
        cost[channel] = cost.get(channel, 0.0) + (PRICES[channel] if made else 0.0)
        if made:
            assert state.done_at is not None
            to_final.append(state.done_at - view.created_at)
        for x in made:
            cell = steps.setdefault((x.step + 1, x.channel), [0, 0])
            cell[0] += 1
            later = any(y.step > x.step for y in made)
            cell[1] += x.state in ("UNDELIVERABLE", "REJECTED", "EXPIRED") and later
            if x.state in ("DELIVERED", "SEEN"):
                assert x.done_at is not None
                delivered_on.setdefault(x.channel, []).append(x.done_at - x.started_at)
    return {
        "accepted": accepted,
        "outcomes": outcomes,
        "errors": errors,
        "steps": steps,
        "cost": {c: round(v, 6) for c, v in cost.items()},
        "to_final": to_final,
        "delivered_on": delivered_on,
    }


def same_bucket(reported: float | None, exact: float | None) -> bool:
    if reported is None or exact is None:
        return reported is exact
    return rollups.latency_bucket(reported) == rollups.latency_bucket(exact)


async def overview(store: Store, account: int, key: str, since: float, until: float) -> dict[str, Any]:
    rng = stats.Range(key, int(since), int(until), rollups.MINUTE if until - since <= 6 * HOUR else HOUR)
    found = await store.overview(account, rng.span, rng.since, rng.until)
    return stats.summarize(found, rng, NOW, "EUR")


def check(summary: dict[str, Any], expected: dict[str, Any]) -> None:
    funnel = summary["funnel"]
    assert funnel["accepted"] == expected["accepted"]
    assert {o: funnel[o] for o in expected["outcomes"]} == expected["outcomes"]
    assert funnel["PENDING"] == 0
    assert {e["error"]: e["count"] for e in summary["errors"]} == expected["errors"]
    assert {(f["step"], f["channel"]): [f["tried"], f["failedOver"]] for f in summary["failover"]} == expected[
        "steps"
    ]
    assert {c["channel"]: c["cost"] for c in summary["cost"]["channels"]} == expected["cost"]
    assert summary["latency"]["all"]["count"] == len(expected["to_final"])
    for q in ("median", "p95"):
        exact = nearest_rank(expected["to_final"], 0.5 if q == "median" else 0.95)
        assert same_bucket(summary["latency"]["all"][q], exact), (q, summary["latency"], exact)
    by_channel = {c["channel"]: c for c in summary["channelLatency"]}
    assert set(by_channel) == set(expected["delivered_on"])
    for channel, values in expected["delivered_on"].items():
        assert by_channel[channel]["count"] == len(values)
        assert same_bucket(by_channel[channel]["median"], nearest_rank(values, 0.5))
        assert same_bucket(by_channel[channel]["p95"], nearest_rank(values, 0.95))


async def test_rollups_are_the_messages_numbers(store: Store) -> None:
    a, b = await fill(store)
    found = await views(store, a)
    # the mixed set is what it should be: every kind of outcome, on three channels, on both sides of the hour
    whole = direct(found, 0, NOW + HOUR)
    assert whole["accepted"] == 12
    assert whole["outcomes"] == {"DELIVERED": 7, "UNDELIVERABLE": 3, "EXPIRED": 1, "REJECTED": 1}
    assert set(whole["errors"]) >= {"EC_ABSENT_SUBSCRIBER_SM", "EC_HARD_BOUNCE", "EC_INVALID_DESTINATION_ADDRESS"}
    assert whole["steps"][(1, "WHATSAPP")] == [6, 3]  # …7 refused, …1 undeliverable, …2 expired: on to SMS
    assert {c for _, c in whole["steps"]} == {"WHATSAPP", "SMS", "EMAIL"}

    for key, since, until in (
        ("both hours", BOUNDARY - HOUR, BOUNDARY + HOUR),
        ("hour before", BOUNDARY - HOUR, BOUNDARY),
        ("hour after", BOUNDARY, BOUNDARY + HOUR),
        ("minutes around", BOUNDARY - 120, BOUNDARY + 120),
        ("minute before", BOUNDARY - 60, BOUNDARY),
    ):
        expected = direct(found, since, until)
        assert expected["accepted"] > 0, key
        check(await overview(store, a, "custom", since, until), expected)

    # the other account's numbers are its own
    other = await overview(store, b, "custom", BOUNDARY - HOUR, BOUNDARY + HOUR)
    assert other["funnel"]["accepted"] == 3
    check(other, direct(await views(store, b), BOUNDARY - HOUR, BOUNDARY + HOUR))
    nothing = await overview(store, a + b + 1, "custom", BOUNDARY - HOUR, BOUNDARY + HOUR)
    assert nothing["funnel"]["accepted"] == 0 and nothing["errors"] == [] and nothing["failover"] == []

    # the series per bucket adds up to the totals, and puts the two sides of the boundary in their own hours
    summary = await overview(store, a, "custom", BOUNDARY - 4 * HOUR, BOUNDARY + 4 * HOUR)
    assert summary["range"]["span"] == HOUR
    hours = dict(zip(summary["buckets"], summary["perMinute"]["accepted"], strict=True))
    assert hours[BOUNDARY - HOUR] == direct(found, BOUNDARY - HOUR, BOUNDARY)["accepted"]
    assert hours[BOUNDARY] == direct(found, BOUNDARY, BOUNDARY + HOUR)["accepted"]
    assert sum(hours.values()) == 12

    # the retention purge removes the messages, not what the overview counted
    while await store.purge(time.time() + 1, 1000):
        pass
    assert await views(store, a) == []
    check(await overview(store, a, "custom", BOUNDARY - HOUR, BOUNDARY + HOUR), direct(found, 0, NOW + HOUR))


async def _as_before_the_rollups(store: Store) -> None:
    """What migration 009 finds and does on a store of an older version: no rollups, every message backlogged."""
    statements = ("DELETE FROM rollups", "INSERT INTO rollup_backlog(message, done)"
                  " SELECT id, done_at IS NOT NULL FROM messages")
    if isinstance(store, SqliteStore):
        for sql in statements:
            await store.writer.run(lambda c, sql=sql: c.execute(sql))
    else:
        assert isinstance(store, PostgresStore)
        for sql in statements:
            await store.pool.execute(sql)


async def test_backfill_gives_the_same_numbers(store: Store) -> None:
    a, b = await fill(store)
    ranges = [(BOUNDARY - HOUR, BOUNDARY + HOUR), (BOUNDARY - 60, BOUNDARY + 60)]
    live = {(acc, r): await overview(store, acc, "custom", *r) for acc in (a, b) for r in ranges}
    await _as_before_the_rollups(store)
    assert await store.rollup_backlog() == 15
    assert (await overview(store, a, "custom", *ranges[0]))["funnel"]["accepted"] == 0
    assert await backfill(store, tariffs(), batch=4) == 15
    assert await store.rollup_backlog() == 0
    for (acc, r), summary in live.items():
        again = await overview(store, acc, "custom", *r)
        assert again | {"generatedAt": 0} == summary | {"generatedAt": 0}
    assert await backfill(store, tariffs()) == 0  # nothing is counted twice


async def test_a_message_pending_at_the_migration_is_counted_when_it_ends(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    await send(store, a, BOUNDARY + 5, ("SMS",), "41790000050")
    await _as_before_the_rollups(store)  # accepted, not started: backlogged as not done
    assert await backfill(store, tariffs()) == 1
    pending = await overview(store, a, "custom", BOUNDARY, BOUNDARY + HOUR)
    assert pending["funnel"] == {"accepted": 1, "DELIVERED": 0, "UNDELIVERABLE": 0, "EXPIRED": 0, "REJECTED": 0,
                                 "PENDING": 1}
    engine = Engine(store, {c.value: Sandbox(None) for c in Channel}, tariffs())
    while not await all_done(store, (a,)):
        await engine.cycle()
    done = await overview(store, a, "custom", BOUNDARY, BOUNDARY + HOUR)
    assert done["funnel"]["accepted"] == 1 and done["funnel"]["DELIVERED"] == 1 and done["funnel"]["PENDING"] == 0
    assert done["cost"]["channels"] == [{"channel": "SMS", "messages": 1, "cost": 0.05}]


async def test_connector_health_snapshots(store: Store) -> None:
    now = time.time()
    await store.put_connector_health("host:1", [("main", "SMS", b'{"bound":true}')], now - 100_000)
    await store.put_connector_health("host:2", [("main", "SMS", b'{"bound":false}'), ("wa", "WHATSAPP", b"{}")], now)
    await store.put_connector_health("host:2", [("main", "SMS", b'{"bound":true}')], now + 1)
    rows = await store.connector_health()
    # a process's snapshot replaces its earlier one; one older than a day is dropped
    assert [(r[0], r[1], r[2], r[3], msgspec.json.decode(r[4])) for r in rows] == [
        ("host:2", "main", "SMS", now + 1, {"bound": True})
    ]
