"""The embedded store on a real SQLite file: group commit, savepoint isolation inside a batch, schema
version refusal and the one-default-scenario rule."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from omnirelay.domain.model import Step
from omnirelay.store.base import NewMessage, ScenarioRecord, SchemaError
from omnirelay.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(120)


def new_message(
    message_id: str,
    *,
    content: bytes = b"c",
    supplied: bool = True,
    phone: str = "41793026727",
) -> NewMessage:
    """A NewMessage, filling whatever fields this version of the dataclass has."""
    values: dict[str, Any] = {
        "message_id": message_id,
        "to_json": f'{{"phoneNumber":"{phone}"}}'.encode(),
        "content_hash": hashlib.blake2b(content, digest_size=16).digest(),
        "state": b'{"phase":"WAITING"}',
        "supplied": supplied,
        "address": phone,
    }
    names = {f.name for f in dataclasses.fields(NewMessage)}
    return NewMessage(**{k: v for k, v in values.items() if k in names})


def scenario(key: str, default: bool, name: str = "s") -> ScenarioRecord:
    return ScenarioRecord(key=key, name=name, flow=[Step(channel="SMS", from_="InfoSMS")], default=default)


def raw(path: Path) -> sqlite3.Connection:
    """An independent connection, as another process would open the file."""
    return sqlite3.connect(path, timeout=10)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "omnirelay.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(db_path)
    yield s
    await s.close()


@pytest.fixture
async def account_id(store: SqliteStore) -> int:
    return (await store.create_account("alice", None, "secret", "cli")).id


class Gate:
    """Holds the writer thread inside one write until released, so what is queued meanwhile forms one batch."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.entered = threading.Event()
        self.release = threading.Event()
        self.task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> Gate:
        def hold(_conn: sqlite3.Connection) -> None:
            self.entered.set()
            self.release.wait(30)

        self.task = asyncio.ensure_future(self.store.writer.run(hold))
        while not self.entered.is_set():
            await asyncio.sleep(0.001)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self.task is not None
        await self.task


# --- group commit ------------------------------------------------------------------------------------------


async def test_concurrent_accepts_share_commits(store: SqliteStore, account_id: int, db_path: Path) -> None:
    calls = 300
    before = store.writer.transactions
    results = await asyncio.gather(
        *(store.accept(account_id, b"{}", None, [new_message(f"m{i}")], 0.0, 0.0) for i in range(calls))
    )
    used = store.writer.transactions - before
    assert [r[0].message_id for r in results] == [f"m{i}" for i in range(calls)]
    assert 1 <= used < calls, used
    # every answered accept is committed: another connection sees all of them
    with raw(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == calls
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == calls


async def test_queued_writes_form_one_transaction(store: SqliteStore, account_id: int) -> None:
    before = store.writer.transactions
    async with Gate(store):
        pending = [
            asyncio.ensure_future(store.accept(account_id, b"{}", None, [new_message(f"g{i}")], 0.0, 0.0))
            for i in range(50)
        ]
        await asyncio.sleep(0.05)
        assert not any(p.done() for p in pending)  # not answered before their commit
    await asyncio.gather(*pending)
    assert store.writer.transactions - before == 2  # the gate's own, and one for all fifty


async def test_many_destinations_in_one_accept(store: SqliteStore, account_id: int, db_path: Path) -> None:
    messages = [new_message(f"bulk-{i}", phone=f"4179{i:07d}") for i in range(1200)]  # > 500: chunked lookups
    stored = await store.accept(account_id, b"{}", "B1", messages, 0.0, 0.0)
    assert [s.message_id for s in stored] == [m.message_id for m in messages]
    assert {s.bulk_id for s in stored} == {"B1"}
    again = await store.accept(account_id, b"{}", "B2", messages, 0.0, 0.0)  # replay: same answers
    assert [(s.message_id, s.bulk_id) for s in again] == [(m.message_id, "B1") for m in messages]
    with raw(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages WHERE bulk_id = 'B1'").fetchone()[0] == 1200


# --- a failing write in a batch ------------------------------------------------------------------------------


async def test_failing_write_does_not_undo_the_others(store: SqliteStore, account_id: int, db_path: Path) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO requests(account_id, payload) VALUES (?, ?)", (account_id, b"doomed"))
        raise RuntimeError("boom")

    before = store.writer.transactions
    async with Gate(store):
        good1 = asyncio.ensure_future(store.accept(account_id, b"one", None, [new_message("ok-1")], 0.0, 0.0))
        bad = asyncio.ensure_future(store.writer.run(half_then_fail))
        good2 = asyncio.ensure_future(store.accept(account_id, b"two", None, [new_message("ok-2")], 0.0, 0.0))
    assert (await good1)[0].message_id == "ok-1"
    with pytest.raises(RuntimeError, match="boom"):
        await bad
    assert (await good2)[0].message_id == "ok-2"
    assert store.writer.transactions - before == 2
    with raw(db_path) as conn:
        ids = {r[0] for r in conn.execute("SELECT message_id FROM messages")}
        payloads = {r[0] for r in conn.execute("SELECT payload FROM requests")}
    assert {"ok-1", "ok-2"} <= ids
    assert b"doomed" not in payloads  # the failing write's own half is rolled back
    assert {b"one", b"two"} <= payloads


async def test_conflicting_message_id_refuses_that_destination_alone(
    store: SqliteStore, account_id: int, db_path: Path
) -> None:
    await store.accept(account_id, b"{}", None, [new_message("taken", content=b"first")], 0.0, 0.0)
    async with Gate(store):
        conflict = asyncio.ensure_future(
            store.accept(
                account_id,
                b"{}",
                None,
                [new_message("fresh-in-conflict"), new_message("taken", content=b"other")],
                0.0,
                0.0,
            )
        )
        fine = asyncio.ensure_future(store.accept(account_id, b"{}", None, [new_message("fine")], 0.0, 0.0))
    assert [(s.message_id, s.duplicate) for s in await conflict] == [("fresh-in-conflict", False), ("taken", True)]
    assert (await fine)[0].message_id == "fine"
    with raw(db_path) as conn:
        ids = {r[0]: r[1] for r in conn.execute("SELECT message_id, content_hash FROM messages")}
    assert "fine" in ids and "fresh-in-conflict" in ids  # the other destinations are stored
    assert ids["taken"] == new_message("taken", content=b"first").content_hash  # the first one is untouched


async def test_failed_scenario_insert_keeps_the_old_default(store: SqliteStore, account_id: int) -> None:
    """create_scenario first clears the old default, then inserts; if the insert fails (duplicate key),
    clearing must be undone with it, while the batch's other writes stay."""
    await store.create_scenario(account_id, scenario("K1", True, "first"))
    async with Gate(store):
        dup = asyncio.ensure_future(store.create_scenario(account_id, scenario("K1", True, "duplicate")))
        other = asyncio.ensure_future(store.create_scenario(account_id, scenario("K2", False, "other")))
    with pytest.raises(sqlite3.IntegrityError):
        await dup
    await other
    default = await store.default_scenario(account_id)
    assert default is not None and default.key == "K1" and default.name == "first"
    assert (await store.scenario(account_id, "K2")) is not None


# --- schema version ------------------------------------------------------------------------------------------


async def test_newer_schema_is_refused(db_path: Path) -> None:
    first = SqliteStore(db_path)
    await first.close()
    with raw(db_path) as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(SchemaError, match="999"):
        SqliteStore(db_path)
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 999  # left as it was


def test_cli_refuses_a_newer_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli = [sys.executable, "-c", "import sys; from omnirelay.cli import main; sys.exit(main())"]
    done = subprocess.run([*cli, "migrate", "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with raw(data / "omnirelay.db") as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        assert version >= 1
        conn.execute("PRAGMA user_version = 999")
    for args in (["migrate"], ["serve", "--port", "1"]):
        done = subprocess.run([*cli, *args, "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "999" in done.stderr and "upgrade" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr


async def test_reopening_keeps_data_and_schema(db_path: Path) -> None:
    s = SqliteStore(db_path)
    acc = await s.create_account("bob", None, "w", "cli")
    await s.create_scenario(acc.id, scenario("KEEP", True))
    await s.close()
    with raw(db_path) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    s = SqliteStore(db_path)
    try:
        assert (await s.default_scenario(acc.id)) is not None
        with raw(db_path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == version
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await s.close()


# --- one default scenario per account --------------------------------------------------------------------------


def defaults(db_path: Path, account: int) -> list[str]:
    with raw(db_path) as conn:
        return [
            r[0] for r in conn.execute("SELECT key FROM scenarios WHERE account_id = ? AND is_default = 1", (account,))
        ]


async def test_a_new_default_replaces_the_old(store: SqliteStore, account_id: int, db_path: Path) -> None:
    await store.create_scenario(account_id, scenario("A", True))
    await store.create_scenario(account_id, scenario("B", True))
    assert defaults(db_path, account_id) == ["B"]
    assert await store.update_scenario(account_id, scenario("A", True))
    assert defaults(db_path, account_id) == ["A"]
    await store.create_scenario(account_id, scenario("C", False))
    assert defaults(db_path, account_id) == ["A"]
    assert await store.update_scenario(account_id, scenario("A", False))
    assert defaults(db_path, account_id) == []
    assert await store.default_scenario(account_id) is None


async def test_concurrent_defaults_leave_exactly_one(store: SqliteStore, account_id: int, db_path: Path) -> None:
    await asyncio.gather(*(store.create_scenario(account_id, scenario(f"D{i}", True)) for i in range(40)))
    assert len(defaults(db_path, account_id)) == 1
    await asyncio.gather(*(store.update_scenario(account_id, scenario(f"D{i}", True)) for i in range(0, 40, 3)))
    assert len(defaults(db_path, account_id)) == 1


async def test_defaults_are_per_account(store: SqliteStore, account_id: int, db_path: Path) -> None:
    other = (await store.create_account("bob", None, "w", "cli")).id
    await store.create_scenario(account_id, scenario("MINE", True))
    await store.create_scenario(other, scenario("THEIRS", True))
    assert defaults(db_path, account_id) == ["MINE"]
    assert defaults(db_path, other) == ["THEIRS"]
    # nor can one account update or delete the other's scenario
    assert not await store.update_scenario(other, scenario("MINE", False))
    assert not await store.delete_scenario(other, "MINE")
    assert defaults(db_path, account_id) == ["MINE"]
