"""Retention on PostgreSQL by generations of partitions (``store/partitions.py``, migration 010), on fresh
databases of this machine's server: what is dropped, what is kept, client message ids across generations, accepts
racing the upkeep, and a database upgraded from schema 9 with messages in it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from omnirelay.store.base import NewMessage
from omnirelay.store.partitions import SPAN
from omnirelay.store.postgres import PostgresDialect, PostgresStore, migrate, migrations
from tests.integration.test_store_contract import accept, message
from tests.pg import create_database, drop_database

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def pg() -> AsyncIterator[PostgresStore]:
    url = await create_database()
    store = await PostgresStore.open(url)
    yield store
    await store.close()
    await drop_database(url)


def refused(message_id: str) -> NewMessage:
    """A message refused at once: stored finished, so retention may take it straight away."""
    m = message(message_id)
    return NewMessage(m.message_id, m.to_json, m.content_hash, b'{"phase":"DONE"}', True, m.address, rejected=True)


async def partitions(store: PostgresStore, table: str) -> list[str]:
    rows = await store.pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass AND c.relkind = 'r' ORDER BY 1",
        table,
    )
    return [r[0] for r in rows]


async def ids(store: PostgresStore, message_id: str) -> list[int]:
    rows = await store.pool.fetch("SELECT id FROM messages WHERE message_id = $1 ORDER BY id", message_id)
    return [r[0] for r in rows]


async def test_a_generation_finished_past_the_retention_is_dropped_whole(pg: PostgresStore) -> None:
    a = (await pg.create_account("a", None, "s", "cli")).id
    await accept(pg, a, refused("r1"), refused("r2"))
    await accept(pg, a, refused("r3"))
    assert await partitions(pg, "messages") == ["messages_g0", "messages_g1", "messages_g2"]
    assert await pg.purge(time.time() - 3600, 100) == 0  # finished just now: kept
    assert await pg.message(a, "r1") is not None
    assert await pg.purge(time.time() + 1, 100) == 3
    # generation 1 went as tables (and the empty generation 0 of the migration); the ids go on in generation 2,
    # with generation 3 made ready
    for table in ("messages", "submissions", "reports", "requests"):
        assert await partitions(pg, table) == [f"{table}_g2", f"{table}_g3"]
    assert await pg.message(a, "r1") is None
    # the client's message id is free again: a new message, in the next generation
    await accept(pg, a, message("r1"))
    assert [i // SPAN for i in await ids(pg, "r1")] == [2]
    assert await pg.purge(time.time() + 1, 100) == 0  # under way: kept


async def test_a_generation_with_a_message_under_way_is_kept_and_its_finished_ones_go_row_by_row(
    pg: PostgresStore,
) -> None:
    a = (await pg.create_account("a", None, "s", "cli")).id
    await accept(pg, a, refused("r1"), message("pending"), refused("r2"))
    assert await pg.purge(time.time() + 1, 100) == 2
    assert "messages_g1" in await partitions(pg, "messages")
    assert await pg.message(a, "r1") is None and await pg.message(a, "r2") is None
    assert await pg.message(a, "pending") is not None
    # the pending message's id still answers the same message; the purged ones' are free
    await accept(pg, a, message("pending"), message("r1"))
    assert len(await ids(pg, "pending")) == 1
    assert [i // SPAN for i in await ids(pg, "r1")] == [2]
    assert await pg.purge(time.time() + 1, 100) == 0


async def test_a_generation_is_sealed_after_a_quarter_of_the_retention(pg: PostgresStore) -> None:
    a = (await pg.create_account("a", None, "s", "cli")).id
    retention = 4 * 3600.0
    await accept(pg, a, message("first"))
    assert await pg.purge(time.time() - retention, 100) == 0
    await accept(pg, a, message("second"))
    assert [i // SPAN for i in await ids(pg, "second")] == [1]  # not sealed yet
    await pg.pool.execute("UPDATE messages SET created_at = created_at - 3700 WHERE message_id = 'first'")
    assert await pg.purge(time.time() - retention, 100) == 0  # sealed, nothing dropped: both are under way
    await accept(pg, a, message("third"))
    assert [i // SPAN for i in await ids(pg, "third")] == [2]
    assert await partitions(pg, "messages") == ["messages_g1", "messages_g2", "messages_g3"]


async def test_accepts_racing_the_upkeep_are_all_kept_once(pg: PostgresStore) -> None:
    """Every purge begins a generation and drops those that hold only finished messages, while two API processes
    send the same client message ids under way at the same time (never to be dropped, each stored once) and a
    third sender sends finished ones."""
    other = await PostgresStore.open(pg.dsn)
    a = (await pg.create_account("a", None, "s", "cli")).id
    acknowledged: list[str] = []
    stop = asyncio.Event()

    async def send_twice() -> None:
        n = 0
        while not stop.is_set():
            batch = [f"open-{n}-{i}" for i in range(5)]
            answers = await asyncio.gather(*(accept(s, a, *map(message, batch)) for s in (pg, other)))
            assert answers == [batch, batch]
            acknowledged.extend(batch)
            n += 1

    async def send_finished() -> None:
        n = 0
        while not stop.is_set():
            await accept(pg, a, *[refused(f"done-{n}-{i}") for i in range(5)])
            n += 1

    senders = [asyncio.create_task(send_twice()), asyncio.create_task(send_finished())]
    dropped = 0
    try:
        for _ in range(40):
            dropped += await pg.purge(time.time() + 1, 1000)
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*senders)
        await other.close()
    generation = await pg.pool.fetchval("SELECT max(id) FROM messages") // SPAN
    assert generation >= 20 and dropped > 0
    kept = [r[0] for r in await pg.pool.fetch("SELECT message_id FROM messages WHERE message_id LIKE 'open-%'")]
    assert sorted(kept) == sorted(acknowledged)


async def test_an_accept_between_taking_its_ids_and_its_commit_is_waited_for(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The moment that matters: the accept has its ids in the generation that the upkeep seals and finds
    finished, and has not stored its message yet."""
    a = (await pg.create_account("a", None, "s", "cli")).id
    await accept(pg, a, refused("early"))
    taken, go = asyncio.Event(), asyncio.Event()
    take_ids = PostgresDialect.take_ids

    async def paused(self: PostgresDialect, conn: Any, requests: int, messages: int) -> tuple[list[int], list[int]]:
        got = await take_ids(self, conn, requests, messages)
        taken.set()
        await go.wait()
        return got

    monkeypatch.setattr(PostgresDialect, "take_ids", paused)
    late = asyncio.create_task(accept(pg, a, message("late", supplied=False)))  # no lookup of stored ids first
    await taken.wait()
    purging = asyncio.create_task(pg.purge(time.time() + 1, 100))
    try:
        await asyncio.sleep(0.5)
        waited = not purging.done()
    finally:
        go.set()
    assert waited  # for the accept
    assert await late == ["late"]
    assert await purging == 1  # "early" row by row: the generation holds "late", under way
    assert await pg.message(a, "late") is not None and await pg.message(a, "early") is None


async def test_a_database_of_schema_9_keeps_its_messages_as_generation_0() -> None:
    url = await create_database(schema=False)
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE omnirelay_schema (version integer PRIMARY KEY, at timestamptz)")
            for number, script in migrations():
                if number <= 9:
                    await conn.execute(script)
                    await conn.execute("INSERT INTO omnirelay_schema VALUES ($1, now())", number)
            await conn.execute(
                "INSERT INTO accounts(id, username, webhook_secret, source, created_at) VALUES (1, 'a', 's', 'cli', 0)"
            )
            await conn.execute("INSERT INTO requests VALUES (nextval('requests_id_seq'), 1, $1)", b'{"steps":[]}')
            old = message("old")
            await conn.execute(
                "INSERT INTO messages(id, account_id, message_id, request_id, to_json, content_hash, created_at,"
                " state, done_at) VALUES (nextval('messages_id_seq'), 1, 'old', 1, $1, $2, $3, $4, $3)",
                old.to_json,
                old.content_hash,
                time.time(),
                b'{"phase":"DONE"}',
            )
            await conn.execute("INSERT INTO submissions VALUES (1, 0, 'SMS', 'p1', 0)")
            await conn.execute(
                "INSERT INTO reports(account_id, message, message_id, channel, body) VALUES (1, 1, 'old', 'SMS', 'x')"
            )
        finally:
            await conn.close()
        assert await migrate(url) == migrations()[-1][0]
        store = await PostgresStore.open(url)
        try:
            assert await store.message(1, "old") is not None
            await accept(store, 1, message("old"), message("new"))  # the same client id: the same message
            assert await ids(store, "old") == [1]
            assert [i // SPAN for i in await ids(store, "new")] == [1]
            assert await store.take_reports(1, None, None, None, 10) == [b"x"]
            assert await store.purge(time.time() + 1, 100) == 1  # generation 1 holds "new", under way
            for table in ("messages", "submissions", "reports", "requests"):
                assert await partitions(store, table) == [f"{table}_g1", f"{table}_g2", f"{table}_g3"]
            assert await store.message(1, "old") is None
        finally:
            await store.close()
    finally:
        await drop_database(url)
