"""The logs' filter columns (schema version 4) on both real stores: messages stored by an older version get them
from the first engine process that starts, and each filter of ``GET /omni/1/logs`` reads its own index."""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from omnirelay.domain.numbering import MccMncTable
from omnirelay.domain.pricing import PriceList
from omnirelay.domain.reports import Tariffs
from omnirelay.engine.log_columns import fill_log_columns
from omnirelay.store import postgres, sqlite
from omnirelay.store.base import LogQuery, Store
from omnirelay.store.flows.reports import logs_statement
from omnirelay.store.postgres import PostgresStore
from omnirelay.store.sqlite import SqliteStore
from tests.pg import ADMIN_URL, drop_database

pytestmark = pytest.mark.timeout(120)

TARIFFS = Tariffs(PriceList("EUR", 0.0, []), MccMncTable({"4179": "01"}))
PAYLOAD = msgspec.json.encode(
    {
        "steps": [
            {"channel": "WHATSAPP", "sender": "OldWA", "validity_s": 60},
            {"channel": "SMS", "sender": "OldSMS", "validity_s": 60},
        ],
        "content": {"whatsApp": {"text": "hi"}, "sms": {"text": "hi"}},
        "options": {},
    }
)
EMAIL_PAYLOAD = msgspec.json.encode(
    {"steps": [{"channel": "EMAIL", "sender": "news@example.com", "validity_s": 60}], "content": {}, "options": {}}
)
#: (message id, request, to, state) of the messages an older version stored
OLD_MESSAGES = [
    ("on-whatsapp", 1, {"phoneNumber": "41790000010"}, {"phase": "DONE", "step": 0, "channel": "WHATSAPP"}),
    ("failed-over", 1, {"phoneNumber": "41790000017"}, {"phase": "DONE", "step": 1, "channel": "SMS"}),
    ("waiting", 1, {"phoneNumber": "4915112345678"}, {"phase": "WAITING"}),
    ("by-mail", 2, {"emailAddress": "a@example.com"}, {"phase": "DONE", "step": 0, "channel": "EMAIL"}),
]


def _old_rows(now: float) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    requests = [(1, 1, PAYLOAD), (2, 1, EMAIL_PAYLOAD)]
    messages = [
        (i + 1, 1, mid, request, msgspec.json.encode(to), b"", now + i, msgspec.json.encode(state))
        for i, (mid, request, to, state) in enumerate(OLD_MESSAGES)
    ]
    return requests, messages


def _sqlite_at_version_2(path: Path) -> None:
    conn = sqlite3.connect(path)
    for number, script in sqlite.migrations():
        if number <= 2:
            conn.executescript(script)
    conn.execute("PRAGMA user_version=2")
    conn.execute("INSERT INTO accounts(id, username, webhook_secret, created_at) VALUES (1, 'a', 's', 0)")
    requests, messages = _old_rows(time.time())
    conn.executemany("INSERT INTO requests(id, account_id, payload) VALUES (?, ?, ?)", requests)
    conn.executemany(
        "INSERT INTO messages(id, account_id, message_id, request_id, to_json, content_hash, created_at, state)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        messages,
    )
    conn.commit()
    conn.close()


async def _postgres_at_version_2() -> str:
    name = f"omnirelay_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"{ADMIN_URL.rpartition('/')[0]}/{name}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE omnirelay_schema (version integer PRIMARY KEY, at timestamptz)")
        for number, script in postgres.migrations():
            if number <= 2:
                await conn.execute(script)
                await conn.execute("INSERT INTO omnirelay_schema VALUES ($1, now())", number)
        await conn.execute("INSERT INTO accounts(id, username, webhook_secret, created_at) VALUES (1, 'a', 's', 0)")
        requests, messages = _old_rows(time.time())
        await conn.executemany("INSERT INTO requests(id, account_id, payload) VALUES ($1, $2, $3)", requests)
        await conn.executemany(
            "INSERT INTO messages(id, account_id, message_id, request_id, to_json, content_hash, created_at, state)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            messages,
        )
    finally:
        await conn.close()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
async def upgraded(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store holding messages of schema version 2, upgraded by this version."""
    if request.param == "sqlite":
        path = tmp_path / "omnirelay.db"
        _sqlite_at_version_2(path)
        store: Store = SqliteStore(path)
        yield store
        await store.close()
    else:
        url = await _postgres_at_version_2()
        await postgres.migrate(url)
        store = await PostgresStore.open(url)
        yield store
        await store.close()
        await drop_database(url)


async def _found(store: Store, **filters: Any) -> set[str]:
    views = await store.logs(1, LogQuery(since=0.0, limit=1000, **filters))
    return {v.message_id for v in views}


async def test_messages_of_an_older_version_get_their_filter_columns(upgraded: Store) -> None:
    # marked by the migration: no filter matches them yet
    assert await _found(upgraded, sender="OldWA") == set()
    assert await _found(upgraded, mcc="228") == set()
    assert await _found(upgraded) == {m[0] for m in OLD_MESSAGES}

    assert await fill_log_columns(upgraded, TARIFFS, batch=3) == 4
    # as the log entries show them: the failed-over message is from the SMS step, the waiting one from its first
    assert await _found(upgraded, sender="OldWA") == {"on-whatsapp", "waiting"}
    assert await _found(upgraded, sender="OldSMS") == {"failed-over"}
    assert await _found(upgraded, sender="news@example.com") == {"by-mail"}
    assert await _found(upgraded, mcc="228") == {"on-whatsapp", "failed-over"}
    assert await _found(upgraded, mnc="01") == {"on-whatsapp", "failed-over"}
    assert await _found(upgraded, mcc="262") == {"waiting"}
    assert await _found(upgraded, mcc="262", mnc="01") == set()
    # done once: the next start finds nothing left
    assert await fill_log_columns(upgraded, TARIFFS) == 0
    assert await upgraded.unindexed_messages(10) == []


async def test_a_message_the_engine_changed_meanwhile_keeps_its_columns(upgraded: Store) -> None:
    rows = await upgraded.unindexed_messages(10)
    assert len(rows) == 4
    # the engine wrote this message after the rows were read: its columns are not overwritten by stale ones
    first = rows[0][0]
    if isinstance(upgraded, SqliteStore):
        await upgraded.writer.run(lambda c: c.execute("UPDATE messages SET sender = 'Engine', mcc = NULL WHERE id = ?",
                                                      (first,)))
    else:
        assert isinstance(upgraded, PostgresStore)
        await upgraded.pool.execute("UPDATE messages SET sender = 'Engine', mcc = NULL WHERE id = $1", first)
    await upgraded.set_log_columns([(r[0], "Stale", "999", None) for r in rows])
    assert await _found(upgraded, sender="Engine") == {OLD_MESSAGES[0][0]}
    assert len(await _found(upgraded, sender="Stale")) == 3


# --- the indexes the filters read --------------------------------------------------------------------


def _sqlite_plan(path: Path, query: LogQuery) -> str:
    sql, args = logs_statement(sqlite.SqliteDialect(), 1, query)
    conn = sqlite3.connect(path)
    try:
        return " | ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
    finally:
        conn.close()


FILTERS = [({"sender": "S3"}, "messages_sender"), ({"mcc": "228"}, "messages_mcc"), ({"mnc": "07"}, "messages_mnc")]


@pytest.mark.parametrize(("filters", "index"), FILTERS)
def test_sqlite_reads_the_filters_index(tmp_path: Path, filters: dict[str, str], index: str) -> None:
    path = tmp_path / "omnirelay.db"
    conn = sqlite3.connect(path)
    sqlite.migrate(conn)
    conn.execute("INSERT INTO requests(id, account_id, payload) VALUES (1, 1, x'7b7d')")
    conn.executemany(
        "INSERT INTO messages(account_id, message_id, request_id, to_json, content_hash, created_at, state, sender,"
        " mcc, mnc) VALUES (1, ?, 1, x'7b7d', x'', ?, x'7b7d', ?, ?, ?)",
        [(f"m{i}", float(i), f"S{i % 5}", "228" if i % 50 == 0 else "262", "07" if i % 70 == 0 else None)
         for i in range(20_000)],
    )
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    plan = _sqlite_plan(path, LogQuery(since=0.0, **filters))
    assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize(("filters", "index"), FILTERS)
async def test_postgres_reads_the_filters_index(filters: dict[str, str], index: str,
                                                pg_filled: Callable[[], Awaitable[str]]) -> None:
    url = await pg_filled()
    sql, args = logs_statement(postgres.PostgresDialect(), 1, LogQuery(since=0.0, **filters))
    conn = await asyncpg.connect(url)
    try:
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
        # messages is partitioned (migration 010): each generation has its own copy of the index
        copies = {r[0] for r in await conn.fetch(_INDEX_COPIES, index)}
    finally:
        await conn.close()
    used = re.findall(r"Index Scan (?:Backward )?using (\S+) on messages_", plan)
    assert used and set(used) <= copies and not re.search(r"(^|->\s+)Sort ", plan, re.M), plan


_INDEX_COPIES = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass"
)


@pytest.fixture(scope="module")
def pg_filled() -> Iterator[Callable[[], Awaitable[str]]]:
    made: list[str] = []

    async def make() -> str:
        if made:
            return made[0]
        from tests.pg import create_database

        url = await create_database()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("INSERT INTO requests(id, account_id, payload) VALUES (1, 1, '{}')")
            await conn.execute(
                "INSERT INTO messages(id, account_id, message_id, request_id, to_json, content_hash, created_at,"
                " state, sender, mcc, mnc) SELECT i, 1, 'm' || i, 1, '{}', '', i, '{}', 'S' || (i % 5),"
                " CASE WHEN i % 50 = 0 THEN '228' ELSE '262' END, CASE WHEN i % 70 = 0 THEN '07' END"
                " FROM generate_series(1, 100000) AS i"
            )
            await conn.execute("ANALYZE messages")
        finally:
            await conn.close()
        made.append(url)
        return url

    yield make
    if made:
        from tests.pg import drop_database_sync

        drop_database_sync(made[0])
