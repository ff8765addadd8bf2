"""The embedded store: one SQLite file in WAL mode, written by a single group-commit writer thread.

Reads run on a connection of the event loop's thread (WAL lets them proceed beside the writer); every
write goes through :class:`~omnirelay.store.writer.Writer`, so requests arriving together share a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec

from omnirelay.domain.catalogue import REJECTED_GROUP
from omnirelay.store import queries
from omnirelay.store.base import Change, NewMessage, ScenarioRecord, SchemaError
from omnirelay.store.flow import All, Call, Each, Exec, Flow, One, Rows, Step, Value, statements
from omnirelay.store.rows import (
    AcceptItem,
)
from omnirelay.store.sqlstore import SqlStore
from omnirelay.store.writer import Writer

T = TypeVar("T")
_MISSING = object()
WATCH_SECONDS = 0.005
"""How often a shared file is checked for other processes' commits (bounds their wake-up latency)."""


class RoleTaken(RuntimeError):
    """Another process already plays this role on the SQLite file."""


def hold_role(path: Path | str, role: str) -> IO[bytes]:
    """Claim ``role`` ("api" or "engine") on the SQLite file at ``path`` for as long as the returned file stays
    open (the operating system releases it when the process ends, however it ends).

    One process at most accepts (the scenario cache is exact only then) and one runs the engine (its claims
    assume no other engine); :class:`RoleTaken` says which other process to stop.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{path}-{role}.lock", "a+b")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        what = {"api": "accepts messages (omnirelay serve or api)", "engine": "runs the engine (serve or worker)"}
        raise RoleTaken(f"another omnirelay process already {what[role]} on {path}") from None
    return handle


def migrations() -> list[tuple[int, str]]:
    """The numbered schema scripts shipped with the package, in order."""
    folder = resources.files("omnirelay.store") / "sql" / "sqlite"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version. Refuses a schema newer than this program."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    known = migrations()
    latest = known[-1][0]
    if version > latest:
        raise SchemaError(
            f"the database has schema version {version}, but this omnirelay knows only up to {latest}: "
            "upgrade omnirelay"
        )
    for number, script in known:
        if number > version:
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
            version = number
    return version


class SqliteDialect:
    """SQLite's statements and the builders of the SQL that depends on a request."""

    q = queries.load("sqlite")
    rollup_shard = 0  # one writer: no row locks to spread

    def message_updates(self, changes: list[Change]) -> list[Rows]:
        """Two statements: the logs' filter columns are set only where they change (setting an indexed column
        rewrites its index entries, whatever the value)."""
        return [
            Rows(
                self.q.update_messages,
                [(c.state, c.status_group, c.channel, c.done_at, c.message) for c in changes if c.columns is None],
            ),
            Rows(
                self.q.update_messages_columns,
                [(c.state, c.status_group, c.channel, c.done_at, *c.columns, c.message) for c in changes if c.columns],
            ),
        ]

    def insert_accepted(
        self,
        conn: sqlite3.Connection,
        items: list[AcceptItem],
        fresh: list[tuple[int, list[NewMessage]]],
        tally: list[Any],
    ) -> int:
        """Per request: its row, its messages in statements of 100, 10 and 1 rows (a statement step per message
        cost as much again as the insert itself; PostgreSQL takes every row of the batch as arrays, in one
        statement), its start jobs by a select of the ids SQLite gave them, then its refused messages."""
        stored = 0
        for index, messages_in in fresh:
            item = items[index]
            messages = [m for m in messages_in if not m.rejected]
            refused = [m for m in messages_in if m.rejected] if len(messages) < len(messages_in) else []
            request_id = conn.execute(
                "INSERT INTO requests(account_id, payload) VALUES (?, ?)", (item.account_id, item.payload)
            ).lastrowid
            # The request's own values are parameters 1-5 of every row, bound once per statement (a request's
            # messages start from the same step, so from the same sender); each message adds 7.
            sender = (messages or messages_in)[0].sender
            shared: list[Any] = [item.account_id, request_id, item.bulk_id, item.now, sender]
            values = [
                v for m in messages for v in (m.message_id, m.to_json, m.content_hash, m.state, m.address, m.mcc, m.mnc)
            ]
            # Statements of 100, then 10, then 1 row (measured: 3.8 -> 2.1 µs a message against one row each).
            # Each size's statement is compiled once and cached by sqlite3.
            done = 0
            for size in (100, 10, 1):
                end = done + (len(messages) - done) // size * size
                if end > done:
                    conn.executemany(
                        "INSERT INTO messages(account_id, request_id, bulk_id, created_at, sender, message_id, to_json,"
                        " content_hash, state, address, mcc, mnc) VALUES "
                        + ",".join(["(?1, ?2, ?3, ?4, ?5, ?, ?, ?, ?, ?, ?, ?)"] * size),
                        [shared + values[7 * k : 7 * (k + size)] for k in range(done, end, size)],
                    )
                done = end
            # SQLite numbered the rows (max + 1 onwards): one start job per message of the request, in that order
            conn.execute(
                "INSERT INTO jobs(message, kind, due_at)"
                " SELECT id, 'start', ? FROM messages WHERE request_id = ? ORDER BY id",
                (item.start_at, request_id),
            )
            if refused:  # after the start jobs, which are for every message of the request stored so far
                finished = (REJECTED_GROUP, item.now)
                conn.executemany(
                    "INSERT INTO messages(account_id, request_id, bulk_id, created_at, sender, message_id, to_json,"
                    " content_hash, state, address, mcc, mnc, status_group, done_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (*shared, m.message_id, m.to_json, m.content_hash, m.state, m.address, m.mcc, m.mnc, *finished)
                        for m in refused
                    ],
                )
            stored += len(messages_in)
        if tally:
            conn.executemany(self.q.upsert_rollups, tally)
        return stored

    def placeholder(self, n: int) -> str:
        return f"?{n}"

    def one_of(self, column: str, values: Sequence[str], arg: Callable[[Any], str]) -> str:
        # one argument a value: the index on the column is read once per value
        return f"{column} IN ({','.join(arg(v) for v in values)})"

    def contains_text(self, column: str, needle: str) -> str:
        return f"instr({column}, {needle}) > 0"

    def contains_bytes(self, column: str, needle: str) -> str:
        return f"instr({column}, {needle}) > 0"


def run_flow(conn: sqlite3.Connection, flow: Flow[T]) -> T:
    """Run ``flow`` on ``conn``, synchronously (the writer thread's connection, or the read connection)."""
    try:
        step = flow.send(None)
        while True:
            try:
                value = _execute(conn, step)
            except Exception as exc:  # the flow's to handle (StopIteration of a statement included)
                step = flow.throw(exc)
            else:
                step = flow.send(value)
    except StopIteration as done:  # only the flow's own end reaches here
        return done.value  # type: ignore[no-any-return]


def _execute(conn: sqlite3.Connection, step: Step) -> Any:
    if isinstance(step, Call):
        return step.fn(conn, *step.args)
    kind, sql = type(step), step.sql
    if kind is Rows:
        if sql and step.args[0]:
            conn.executemany(sql, step.args[0])
        return None
    if not sql:
        return [] if kind is All else 0 if kind is Exec else None
    # a list argument is bound as JSON text, which the statement reads with json_each()
    args = [msgspec.json.encode(a).decode() if isinstance(a, list) else a for a in step.args]
    if kind is Each:
        for statement in statements(sql):
            conn.execute(statement, args)
        return None
    cursor = conn.execute(sql, args)
    if kind is One:
        return cursor.fetchone()
    if kind is All:
        return cursor.fetchall()
    if kind is Value:
        row = cursor.fetchone()
        return row[0] if row else None
    return cursor.rowcount


class SqliteStore(SqlStore):
    """The :class:`~omnirelay.store.base.Store` on a SQLite file."""

    dialect = SqliteDialect()

    def __init__(self, path: Path | str, synchronous: str = "FULL", shared: bool = False) -> None:
        """Open (and migrate) the file. ``shared``: other processes write it too (``omnirelay api`` beside
        ``omnirelay worker``), so writes take a lock file and :meth:`subscribe` watches for their commits."""
        self.path = str(path)
        if self.path == ":memory:" or self.path.startswith("file:"):
            # An in-memory database is private to one connection, and the shared-cache form takes table locks
            # that a read beside the writer thread fails on (SQLITE_LOCKED): it would not be this store's code path.
            raise ValueError("SqliteStore needs a file (for a test, one in a temporary folder)")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as turn:
            # processes starting together (serve's two) migrate one after the other; also the switch of a new
            # file to WAL, which SQLite refuses at once ("database is locked") to a second connection
            lock = turn.enter_context(open(self.path + "-write.lock", "a+b"))
            fcntl.flock(lock, fcntl.LOCK_EX)
            setup = _connect(self.path, synchronous)
            try:
                self.version = migrate(setup)
            finally:
                setup.close()
        self.shared = shared
        self.writer = Writer(lambda: _connect(self.path, synchronous), self.path + "-write.lock" if shared else None)
        self.writer.start()
        self._read_conn = _connect(self.path, synchronous)
        self._read_conn.execute("PRAGMA query_only=ON")
        # Scenarios as sends read them. Exact, because only this process writes scenarios (one API process per
        # file, see hold_role; the CLI's `accounts remove` deletes an account's scenarios with its credentials,
        # so no send reads them again).
        self._scenarios: dict[tuple[int, str | None], ScenarioRecord | None] = {}
        self._on_jobs: Callable[[], None] = lambda: None
        self._on_outbox: Callable[[], None] = lambda: None
        self._watch: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Finish queued writes and close the file."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self.writer.stop()
        self._read_conn.close()

    def subscribe(self, on_jobs: Callable[[], None], on_outbox: Callable[[], None]) -> None:
        """Call ``on_jobs`` / ``on_outbox`` after receipts / webhook deliveries are stored from outside the engine.

        In one process the engine and the API wake each other directly. A shared file is also watched for
        other processes' commits (new messages, receipts from WhatsApp webhooks), every ``WATCH_SECONDS``.
        """
        self._on_jobs, self._on_outbox = on_jobs, on_outbox
        if self.shared and self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_commits(), name="sqlite-watch")

    async def _watch_commits(self) -> None:
        # PRAGMA data_version changes when any other connection commits: a read of shared memory, no I/O.
        seen = self._one("PRAGMA data_version")[0]
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            version = self._one("PRAGMA data_version")[0]
            if version != seen:
                seen = version
                self._on_jobs()
                self._on_outbox()

    async def _read(self, make: Callable[[], Flow[T]]) -> T:
        return run_flow(self._read_conn, make())

    async def _write(self, make: Callable[[], Flow[T]]) -> T:
        return await self.writer.run(lambda conn: run_flow(conn, make()))

    async def _write_statement(self, make: Callable[[], Flow[T]]) -> T:
        return await self._write(make)

    def _jobs_written(self) -> None:
        self._on_jobs()

    def _scenarios_written(self) -> None:
        self._scenarios.clear()

    async def _cached_scenario(
        self, key: tuple[int, str | None], read: Callable[[], Flow[ScenarioRecord | None]]
    ) -> ScenarioRecord | None:
        cached = self._scenarios.get(key, _MISSING)
        if cached is _MISSING:
            cached = self._scenarios[key] = await self._read(read)
        return cached  # type: ignore[return-value]

    def _webhooks_queued(self) -> None:
        self._on_outbox()

    def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self._read_conn.execute(sql, tuple(args)).fetchone()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        return self._read_conn.execute(sql, tuple(args)).fetchall()
