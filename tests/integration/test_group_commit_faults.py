"""One bad member never fails a group commit: on a real SQLite file and a fresh PostgreSQL database, a batch
holding a request the database refuses answers every other request with its stored messages, and only the
culprit with its error. Also: a connection that breaks as it is given back never fails work already done."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest

from omnirelay.store.base import LogQuery, Store
from omnirelay.store.errors import UNAVAILABLE
from omnirelay.store.postgres import PostgresStore
from omnirelay.store.sqlite import SqliteStore
from tests.integration.test_sqlite_store import Gate
from tests.integration.test_store_contract import message
from tests.pg import create_database, drop_database

pytestmark = pytest.mark.timeout(120)


async def _accept(store: Store, account: int, message_id: str) -> list[str]:
    now = time.time()
    stored = await store.accept(account, b'{"steps":[]}', None, [message(message_id)], now, now)
    return [s.message_id for s in stored]


async def test_a_refused_message_id_fails_only_its_own_request(store: Store) -> None:
    """Text neither database stores (a lone surrogate; on PostgreSQL also NUL) among concurrent accepts that
    share group commits: every other request is stored and answered."""
    a = (await store.create_account("a", None, "s", "cli")).id
    poison = ["bad\ud800"] + (["bad\x00nul"] if isinstance(store, PostgresStore) else [])
    ids = [f"good-{i}" for i in range(120)]
    for k, bad in enumerate(poison):
        ids.insert(30 + 40 * k, bad)
    results = await asyncio.gather(*(_accept(store, a, m) for m in ids), return_exceptions=True)
    for message_id, result in zip(ids, results, strict=True):
        if message_id in poison:
            assert isinstance(result, Exception), (message_id, result)
            assert not isinstance(result, UNAVAILABLE), result  # the database is fine: not a 503
        else:
            assert result == [message_id], (message_id, result)
    stored = {v.message_id for v in await store.logs(a, LogQuery(since=0, limit=1000))}
    assert stored == {m for m in ids if m not in poison}


async def test_a_write_that_fails_the_commit_fails_alone(tmp_path: Path) -> None:
    """A write that passes its own savepoint but makes the COMMIT fail (a deferred constraint): the writer finds
    it and commits every other write of the batch."""
    path = tmp_path / "omnirelay.db"
    store = SqliteStore(path)
    try:
        with sqlite3.connect(path) as setup:
            setup.executescript(
                "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
                " CREATE TABLE child(p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"
            )
        a = (await store.create_account("a", None, "s", "cli")).id

        def orphan(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO child(p) VALUES (999)")  # checked only at COMMIT
            return "written"

        async with Gate(store):
            before = [asyncio.ensure_future(_accept(store, a, f"before-{i}")) for i in range(20)]
            bad = asyncio.ensure_future(store.writer.run(orphan))
            after = [asyncio.ensure_future(_accept(store, a, f"after-{i}")) for i in range(20)]
            await asyncio.sleep(0.05)
        answers = await asyncio.gather(*before, *after)
        assert [r[0] for r in answers] == [f"before-{i}" for i in range(20)] + [f"after-{i}" for i in range(20)]
        with pytest.raises(sqlite3.IntegrityError):
            await bad
        with sqlite3.connect(path) as check:
            assert check.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 40
            assert check.execute("SELECT COUNT(*) FROM child").fetchone()[0] == 0
    finally:
        await store.close()


async def test_a_connection_lost_on_release_does_not_fail_stored_work() -> None:
    """The server ends the connection while it is being given back after a committed accept: the accept is
    answered (it is stored), not failed."""
    url = await create_database()
    store = await PostgresStore.open(url, min_size=1, max_size=1)
    try:
        a = (await store.create_account("a", None, "s", "cli")).id
        async with store.pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        admin = await asyncpg.connect(url)
        try:
            real_reset = asyncpg.Connection.reset

            async def killed_reset(self: asyncpg.Connection, *, timeout: float | None = None) -> None:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
                await asyncio.sleep(0.2)
                await real_reset(self, timeout=timeout)

            asyncpg.Connection.reset = killed_reset  # type: ignore[method-assign]
            try:
                assert await _accept(store, a, "kept") == ["kept"]
            finally:
                asyncpg.Connection.reset = real_reset  # type: ignore[method-assign]
            assert [r[0] for r in await admin.fetch("SELECT message_id FROM messages")] == ["kept"]
        finally:
            await admin.close()
        assert await _accept(store, a, "next") == ["next"]  # the pool opened a new connection
    finally:
        await store.close()
        await drop_database(url)
