"""The embedded store: one SQLite file in WAL mode, written by a single group-commit writer thread.

Reads run on a connection of the event loop's thread (WAL lets them proceed beside the writer); every
write goes through :class:`~omnirelay.store.writer.Writer`, so requests arriving together share a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec

from omnirelay.domain import rollups
from omnirelay.domain.inbound import Build, InboundMessage, InboundPart
from omnirelay.store import queries
from omnirelay.store.base import (
    Account,
    ApiKey,
    AuthToken,
    Backlogged,
    Change,
    Cursor,
    Delivery,
    Found,
    LogQuery,
    MessageSearch,
    MessageView,
    NewMessage,
    Overview,
    ScenarioRecord,
)
from omnirelay.store.flow import All, Call, Each, Exec, Flow, One, Rows, Step, Value, statements
from omnirelay.store.flows.engine import rollup_rows
from omnirelay.store.inbound import (
    PART_COLS,
    RETENTION_S,
    InboundCounts,
    fresh_parts,
    message_of,
    message_rows,
    part_row,
    single,
)
from omnirelay.store.rows import (
    ACCOUNT_COLS,
    NEXT_DUE,
    OVERVIEW_SERIES,
    OVERVIEW_TOTALS,
    REJECTED_GROUP,
    SCENARIO_COLS,
    VIEW_COLS,
    AcceptItem,
    account_from_row,
    scenario_from_row,
    take_tokens,
)
from omnirelay.store.search import error_needle, keyset
from omnirelay.store.sqlstore import SqlStore
from omnirelay.store.writer import Writer

T = TypeVar("T")
_MISSING = object()
WATCH_SECONDS = 0.005
GIVEN_UP = float("inf")
"""The due time of a webhook delivery whose tries are used up (kept, never tried again, blocks nothing)."""
"""How often a shared file is checked for other processes' commits (bounds their wake-up latency)."""


class SchemaError(RuntimeError):
    """The database's schema is newer than this program knows."""


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
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as turn:
            if self.path != ":memory:":
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

    async def _read(self, flow: Flow[T]) -> T:
        return run_flow(self._read_conn, flow)

    async def _write(self, flow: Flow[T] | Callable[[], Flow[T]]) -> T:
        if callable(flow):  # the writer runs a write again when its group transaction failed as a whole
            make = flow
            return await self.writer.run(lambda conn: run_flow(conn, make()))
        return await self.writer.run(lambda conn: run_flow(conn, flow))

    def _jobs_written(self) -> None:
        self._on_jobs()

    def _scenarios_written(self) -> None:
        self._scenarios.clear()

    def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self._read_conn.execute(sql, tuple(args)).fetchone()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        return self._read_conn.execute(sql, tuple(args)).fetchall()

    # --- accounts and keys ---------------------------------------------------------------------

    async def set_password_hash(self, account_id: int, password_hash: str | None) -> None:
        await self.writer.run(
            lambda c: c.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account_id))
        )

    async def accounts(self) -> list[Account]:
        return [account_from_row(r) for r in self._all(f"SELECT {ACCOUNT_COLS} FROM accounts ORDER BY id")]

    async def account_by_username(self, username: str) -> Account | None:
        row = self._one(f"SELECT {ACCOUNT_COLS} FROM accounts WHERE username = ?", (username,))
        return account_from_row(row) if row else None

    async def account_by_key_hash(self, key_hash: str) -> Account | None:
        row = self._one(
            f"SELECT {', '.join('a.' + c.strip() for c in ACCOUNT_COLS.split(','))} FROM api_keys k"
            " JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = ?",
            (key_hash,),
        )
        return account_from_row(row) if row else None

    async def add_key(self, account_id: int, key_id: str, key_hash: str, source: str) -> None:
        await self.writer.run(
            lambda c: c.execute(
                "INSERT INTO api_keys(id, account_id, key_hash, source, created_at)"
                " VALUES (?, ?, ?, ?, CAST(strftime('%s','now') AS REAL)) ON CONFLICT(key_hash) DO NOTHING",
                (key_id, account_id, key_hash, source),
            )
        )

    async def revoke_key(self, key_id: str) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM api_keys WHERE id = ?", (key_id,)).rowcount > 0

        return await self.writer.run(fn)

    async def keys(self) -> list[ApiKey]:
        rows = self._all(
            "SELECT k.id, k.account_id, a.username, k.source, k.created_at FROM api_keys k"
            " JOIN accounts a ON a.id = k.account_id ORDER BY k.created_at"
        )
        return [ApiKey(*r) for r in rows]

    # --- console sessions ----------------------------------------------------------------------

    async def add_console_session(
        self, token_hash: str, account_id: int, password_hash: str, expires_at: float, now: float
    ) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO console_sessions(token_hash, account_id, password_hash, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, account_id, password_hash, expires_at),
            )

        await self.writer.run(fn)

    async def console_session(self, token_hash: str, now: float) -> Account | None:
        row = self._one(
            f"SELECT {', '.join('a.' + c.strip() for c in ACCOUNT_COLS.split(','))} FROM console_sessions s"
            " JOIN accounts a ON a.id = s.account_id"
            " WHERE s.token_hash = ? AND s.expires_at > ? AND a.password_hash = s.password_hash",
            (token_hash, now),
        )
        return account_from_row(row) if row else None

    async def end_console_session(self, token_hash: str) -> None:
        await self.writer.run(lambda c: c.execute("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,)))
    # --- session and OAuth tokens --------------------------------------------------------------

    async def add_auth_token(
        self,
        account_id: int,
        token_hash: str,
        kind: str,
        now: float,
        expires_at: float,
        idle_seconds: float | None,
        only_one: bool,
    ) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM auth_tokens WHERE expires_at <= ?", (now,))
            if only_one and conn.execute(
                "SELECT 1 FROM auth_tokens WHERE account_id = ? AND kind = ?", (account_id, kind)
            ).fetchone():
                return False
            conn.execute(
                "INSERT INTO auth_tokens(token_hash, account_id, kind, created_at, expires_at, idle_seconds)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (token_hash, account_id, kind, now, expires_at, idle_seconds),
            )
            return True

        return await self.writer.run(fn)

    async def auth_token(self, token_hash: str, now: float) -> AuthToken | None:
        cols = ", ".join("a." + c.strip() for c in ACCOUNT_COLS.split(","))
        row = self._one(
            f"SELECT t.kind, t.expires_at, t.idle_seconds, {cols} FROM auth_tokens t"
            " JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = ? AND t.expires_at > ?",
            (token_hash, now),
        )
        return AuthToken(account_from_row(row[3:]), row[0], row[1], row[2]) if row else None

    async def extend_auth_token(self, token_hash: str, expires_at: float, now: float) -> None:
        await self.writer.run(
            lambda c: c.execute(
                "UPDATE auth_tokens SET expires_at = ? WHERE token_hash = ? AND expires_at > ? AND expires_at < ?",
                (expires_at, token_hash, now, expires_at),
            )
        )

    async def remove_auth_tokens(self, account_id: int, kind: str, token_hash: str | None = None) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            sql = "DELETE FROM auth_tokens WHERE account_id = ? AND kind = ?"
            args: tuple[Any, ...] = (account_id, kind)
            if token_hash is not None:
                sql, args = sql + " AND token_hash = ?", (*args, token_hash)
            return conn.execute(sql, args).rowcount

        return await self.writer.run(fn)

    # --- scenarios -----------------------------------------------------------------------------

    async def create_scenario(self, account_id: int, scenario: ScenarioRecord) -> None:

        def fn(conn: sqlite3.Connection) -> None:
            if scenario.default:
                conn.execute(
                    "UPDATE scenarios SET is_default = 0 WHERE account_id = ? AND is_default = 1",
                    (account_id,),
                )
            conn.execute(
                "INSERT INTO scenarios(key, account_id, name, flow, is_default, created_at)"
                " VALUES (?, ?, ?, ?, ?, CAST(strftime('%s','now') AS REAL))",
                (
                    scenario.key,
                    account_id,
                    scenario.name,
                    msgspec.json.encode(scenario.flow),
                    scenario.default,
                ),
            )

        await self.writer.run(fn)
        self._scenarios.clear()  # after the commit: sends read scenarios from this cache

    async def update_scenario(self, account_id: int, scenario: ScenarioRecord) -> bool:

        def fn(conn: sqlite3.Connection) -> bool:
            if scenario.default:
                conn.execute(
                    "UPDATE scenarios SET is_default = 0 WHERE account_id = ? AND key <> ?",
                    (account_id, scenario.key),
                )
            return (
                conn.execute(
                    "UPDATE scenarios SET name = ?, flow = ?, is_default = ? WHERE account_id = ? AND key = ?",
                    (
                        scenario.name,
                        msgspec.json.encode(scenario.flow),
                        scenario.default,
                        account_id,
                        scenario.key,
                    ),
                ).rowcount
                > 0
            )

        done = await self.writer.run(fn)
        self._scenarios.clear()  # after the commit: sends read scenarios from this cache
        return done

    async def delete_scenario(self, account_id: int, key: str) -> bool:

        def fn(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute("DELETE FROM scenarios WHERE account_id = ? AND key = ?", (account_id, key)).rowcount > 0
            )

        done = await self.writer.run(fn)
        self._scenarios.clear()  # after the commit: sends read scenarios from this cache
        return done

    async def scenario(self, account_id: int, key: str) -> ScenarioRecord | None:
        cached = self._scenarios.get((account_id, key), _MISSING)
        if cached is _MISSING:
            row = self._one(
                f"SELECT {SCENARIO_COLS} FROM scenarios WHERE account_id = ? AND key = ?", (account_id, key)
            )
            cached = self._scenarios[(account_id, key)] = scenario_from_row(row) if row else None
        return cached  # type: ignore[return-value]

    async def default_scenario(self, account_id: int) -> ScenarioRecord | None:
        cached = self._scenarios.get((account_id, None), _MISSING)
        if cached is _MISSING:
            row = self._one(
                f"SELECT {SCENARIO_COLS} FROM scenarios WHERE account_id = ? AND is_default = 1", (account_id,)
            )
            cached = self._scenarios[(account_id, None)] = scenario_from_row(row) if row else None
        return cached  # type: ignore[return-value]

    async def scenarios(self, account_id: int, is_default: bool | None, limit: int, page: int) -> list[ScenarioRecord]:
        where, args = "account_id = ?", [account_id]
        if is_default is not None:
            where += " AND is_default = ?"
            args.append(int(is_default))
        rows = self._all(
            f"SELECT {SCENARIO_COLS} FROM scenarios WHERE {where} ORDER BY rowid LIMIT ? OFFSET ?",
            [*args, limit, page * limit],
        )
        return [scenario_from_row(r) for r in rows]

    # --- engine --------------------------------------------------------------------------------

    async def queue_stats(self, now: float) -> tuple[int, float | None]:
        """How many jobs are due, and when the oldest of them fell due."""
        count, oldest = self._one("SELECT COUNT(*), MIN(due_at) FROM jobs WHERE due_at <= ?", (now,))
        return int(count), oldest

    async def check_writable(self, now: float) -> None:
        """Commit one small write through the group-commit writer (fails on a read-only or full file)."""
        await self.writer.run(
            lambda c: c.execute(
                "INSERT INTO readiness(id, at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET at = excluded.at", (now,)
            )
        )

    async def next_due(self) -> float | None:
        """When the earliest job is due, or None when there is none."""
        row = self._one(NEXT_DUE)
        return float(row[0]) if row and row[0] is not None else None

    # --- reports, logs, webhooks ----------------------------------------------------------------

    async def take_reports(
        self, account_id: int, bulk_id: str | None, message_id: str | None, channel: str | None, limit: int
    ) -> list[bytes]:
        """The oldest final reports not yet taken, removed as they are taken (each is returned once)."""
        where: list[str] = ["account_id = ?"]
        args: list[Any] = [account_id]
        for column, value in (("bulk_id", bulk_id), ("message_id", message_id), ("channel", channel)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)

        def fn(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                f"SELECT id, body FROM reports WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
                [*args, limit],
            ).fetchall()
            conn.executemany("DELETE FROM reports WHERE id = ?", [(r[0],) for r in rows])
            return [r[1] for r in rows]

        return await self.writer.run(fn)

    async def logs(self, account_id: int, query: LogQuery) -> list[MessageView]:
        """Messages matching the filters, newest first."""
        return [MessageView(*r) for r in self._all(*logs_statement(account_id, query))]

    async def message(self, account_id: int, message_id: str) -> MessageView | None:
        """One message of the account, or None."""
        row = self._one(
            f"SELECT {VIEW_COLS} FROM messages m"
            " JOIN requests r ON r.id = m.request_id WHERE m.account_id = ? AND m.message_id = ?",
            (account_id, message_id),
        )
        return MessageView(*row) if row else None

    async def unindexed_messages(self, limit: int) -> list[tuple[int, bytes, bytes, bytes]]:
        """Messages stored before the logs' filter columns existed: (id, to_json, state, payload)."""
        rows = self._all(
            "SELECT m.id, m.to_json, m.state, r.payload FROM messages m JOIN requests r ON r.id = m.request_id"
            " WHERE m.mcc = '?' ORDER BY m.id LIMIT ?",
            (limit,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def set_log_columns(self, rows: list[tuple[int, str | None, str | None, str | None]]) -> None:
        """Fill the filter columns of messages stored before they existed (unless the engine did meanwhile)."""
        await self.writer.run(
            lambda c: c.executemany(
                "UPDATE messages SET sender = ?, mcc = ?, mnc = ? WHERE id = ? AND mcc = '?'",
                [(sender, mcc, mnc, mid) for mid, sender, mcc, mnc in rows],
            )
        )

    async def claim_deliveries(self, now: float, limit: int, lease_s: float) -> list[Delivery]:
        """Webhook deliveries that are due, leased for ``lease_s`` so no other notifier takes them meanwhile; one
        waits while an earlier delivery of the same message is in the outbox (unsent, in flight or to be retried,
        not given up), so a message's reports arrive in order."""

        def fn(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT id, account_id, report_id, url, content_type, body, attempts FROM outbox o"
                " WHERE due_at <= ? AND lease_until <= ? AND (message IS NULL OR NOT EXISTS"
                " (SELECT 1 FROM outbox e WHERE e.message = o.message AND e.id < o.id AND e.due_at < ?))"
                " ORDER BY due_at LIMIT ?",
                (now, now, GIVEN_UP, limit),
            ).fetchall()
            conn.executemany("UPDATE outbox SET lease_until = ? WHERE id = ?", [(now + lease_s, r[0]) for r in rows])
            return [Delivery(*r) for r in rows]

        return await self.writer.run(fn)

    async def settle_deliveries(self, done: list[int], retries: list[tuple[int, float | None, str]]) -> None:
        """Drop the deliveries the receivers acknowledged; reschedule the others (``None``: tries used up, the row
        is kept and marked, never lost silently)."""

        def fn(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(d,) for d in done])
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, due_at = ?, lease_until = 0, last_error = ? WHERE id = ?",
                [(due if due is not None else GIVEN_UP, error, d) for d, due, error in retries],
            )

        await self.writer.run(fn)

    async def push_webhooks(self, items: list[tuple[int, str, str, str, bytes]], now: float) -> None:
        """Queue webhook deliveries that do not come from the engine (inbound messages)."""

        def fn(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(report_id) DO NOTHING",
                [(*item, now) for item in items],
            )

        await self.writer.run(fn)
        self._on_outbox()

    # --- connectors ----------------------------------------------------------------------------

    async def provider_ids_like(self, channel: str, prefix: str, since: float, until: float, limit: int) -> list[str]:
        """Provider ids of ``channel`` starting with ``prefix``, stored from ``since`` to ``until``, newest first."""
        rows = self._all(
            "SELECT provider_id FROM submissions WHERE channel = ? AND substr(provider_id, 1, ?) = ?"
            " AND at >= ? AND at <= ? ORDER BY at DESC LIMIT ?",
            (channel, len(prefix), prefix, since, until, limit),
        )
        return [str(r[0]) for r in rows]

    async def set_capabilities(self, rows: list[tuple[int, str, str, float]]) -> None:
        """Upsert capability memory rows (account_id, channel, address, until)."""

        def fn(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO capabilities(account_id, channel, address, until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(account_id, address, channel) DO UPDATE SET until = excluded.until",
                rows,
            )

        await self.writer.run(fn)

    async def capabilities_of(self, account_id: int, channel: str, addresses: list[str], now: float) -> set[str]:
        """Which of ``addresses`` the capability memory holds for ``channel`` at ``now``."""
        found: set[str] = set()
        for start in range(0, len(addresses), 500):
            chunk = addresses[start : start + 500]
            found.update(
                str(r[0])
                for r in self._all(
                    "SELECT address FROM capabilities WHERE account_id = ? AND channel = ? AND until > ?"
                    f" AND address IN ({','.join('?' * len(chunk))})",
                    (account_id, channel, now, *chunk),
                )
            )
        return found

    async def take_tokens(self, key: str, want: int, rate: float, burst: float, now: float) -> int:
        """Take up to ``want`` tokens from the bucket ``key``; returns how many were granted."""

        def fn(conn: sqlite3.Connection) -> int:
            bucket = conn.execute("SELECT tokens, updated FROM rate_buckets WHERE key = ?", (key,)).fetchone()
            granted, left = take_tokens(bucket, want, rate, burst, now)
            conn.execute(
                "INSERT INTO rate_buckets(key, tokens, updated) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
                (key, left, now),
            )
            return granted

        return await self.writer.run(fn)

    # --- inbound SMS ---------------------------------------------------------------------------

    async def record_inbound(
        self, parts: list[InboundPart], now: float, window_s: float, build: Build
    ) -> InboundCounts:
        """Store received parts of inbound SMS, dropping those seen within ``window_s`` (see the protocol)."""

        def fn(conn: sqlite3.Connection) -> InboundCounts:
            fresh: list[InboundPart] = []
            for part in fresh_parts(parts):
                taken = conn.execute(
                    "INSERT INTO inbound_seen(key, at) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET at = excluded.at"
                    " WHERE inbound_seen.at < ? RETURNING key",
                    (part.key, now, now - window_s),
                ).fetchone()
                if taken is not None:
                    fresh.append(part)
            done = [single(p, now) for p in fresh if p.total <= 1]
            long = [p for p in fresh if p.total > 1]
            conn.executemany(
                f"INSERT INTO inbound_parts({PART_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(grp, seq) DO NOTHING",
                [part_row(p, now) for p in long],
            )
            for group, total in {p.group: p.total for p in long}.items():
                rows = conn.execute(f"SELECT {PART_COLS} FROM inbound_parts WHERE grp = ?", (group,)).fetchall()
                if len(rows) >= total:
                    conn.execute("DELETE FROM inbound_parts WHERE grp = ?", (group,))
                    done.append(message_of(rows))
            _store_inbound(conn, done, now, build)
            return InboundCounts(len(fresh), len(parts) - len(fresh), len(done))

        counts = await self.writer.run(fn)
        if counts.completed:
            self._on_outbox()
        return counts

    async def sweep_inbound(self, now: float, part_timeout_s: float, window_s: float, build: Build) -> int:
        """Deliver long messages whose parts stopped coming; forget old keys and unpulled messages."""

        def fn(conn: sqlite3.Connection) -> int:
            groups = conn.execute(
                "SELECT grp FROM inbound_parts GROUP BY grp HAVING MIN(at) < ?", (now - part_timeout_s,)
            ).fetchall()
            done = []
            for (group,) in groups:
                rows = conn.execute(f"SELECT {PART_COLS} FROM inbound_parts WHERE grp = ?", (group,)).fetchall()
                conn.execute("DELETE FROM inbound_parts WHERE grp = ?", (group,))
                done.append(message_of(rows))
            _store_inbound(conn, done, now, build)
            conn.execute("DELETE FROM inbound_seen WHERE at < ?", (now - window_s,))
            conn.execute("DELETE FROM inbound_messages WHERE received_at < ?", (now - RETENTION_S,))
            return len(done)

        expired = await self.writer.run(fn)
        if expired:
            self._on_outbox()
        return expired

    async def take_inbound(self, account_id: int, limit: int, since: float) -> tuple[list[bytes], int]:
        """The account's oldest inbound messages, removed as they are taken, and how many remain."""

        def fn(conn: sqlite3.Connection) -> tuple[list[bytes], int]:
            rows = conn.execute(
                "SELECT id, body FROM inbound_messages WHERE account_id = ? AND received_at >= ? ORDER BY id LIMIT ?",
                (account_id, since, limit),
            ).fetchall()
            conn.executemany("DELETE FROM inbound_messages WHERE id = ?", [(r[0],) for r in rows])
            (left,) = conn.execute(
                "SELECT COUNT(*) FROM inbound_messages WHERE account_id = ? AND received_at >= ?", (account_id, since)
            ).fetchone()
            return [r[1] for r in rows], int(left)

        return await self.writer.run(fn)

    # --- console search ------------------------------------------------------------------------

    async def search_messages(
        self, account_id: int, search: MessageSearch, after: Cursor | None = None, before: Cursor | None = None
    ) -> list[Found]:
        """A page of matching messages, newest first, next to a cursor (keyset paging)."""
        where, args = search_filters(account_id, search)
        condition, bounds, oldest_first = keyset(after, before)
        if condition:
            where.append(condition)
            args.extend(bounds)
        order = "ASC" if oldest_first else "DESC"
        rows = self._all(
            f"SELECT m.id, {VIEW_COLS} FROM messages m JOIN requests r ON r.id = m.request_id"
            f" WHERE {' AND '.join(where)} ORDER BY m.created_at {order}, m.id {order} LIMIT ?",
            [*args, search.filters.limit],
        )
        found = [Found(Cursor(r[4], r[0]), MessageView(*r[1:])) for r in rows]
        return found[::-1] if oldest_first else found

    async def count_messages(self, account_id: int, search: MessageSearch, cap: int) -> int:
        """How many messages match, up to ``cap`` (``cap + 1``: more)."""
        where, args = search_filters(account_id, search)
        row = self._one(
            f"SELECT count(*) FROM (SELECT 1 FROM messages m WHERE {' AND '.join(where)} LIMIT ?)", [*args, cap + 1]
        )
        return int(row[0])

    # --- the console overview ------------------------------------------------------------------

    async def overview(self, account_id: int, span: int, since: float, until: float) -> Overview:
        """The account's rollup rows of width ``span`` for messages accepted in ``[since, until)``."""
        args = (account_id, span, since, until)
        return Overview(self._all(OVERVIEW_TOTALS.format(p="?"), args), self._all(OVERVIEW_SERIES.format(p="?"), args))

    async def backfill_rollups(self, limit: int, tally: Callable[[list[Backlogged]], list[rollups.Row]]) -> int:
        """Add up to ``limit`` backlogged messages to the rollups, dropping them from the backlog."""

        def fn(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT b.message, m.account_id, m.created_at, m.state, m.status_group, b.done, m.to_json, r.payload"
                " FROM rollup_backlog b LEFT JOIN messages m ON m.id = b.message"
                " LEFT JOIN requests r ON r.id = m.request_id ORDER BY b.message LIMIT ?",
                (limit,),
            ).fetchall()
            found = [Backlogged(r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows if r[1] is not None]
            upsert_rollups(conn, tally(found))
            conn.executemany("DELETE FROM rollup_backlog WHERE message = ?", [(r[0],) for r in rows])
            return len(rows)

        return await self.writer.run(fn)

    async def rollup_backlog(self) -> int:
        """How many messages are still to be added to the rollups."""
        return int(self._one("SELECT COUNT(*) FROM rollup_backlog")[0])

    async def put_connector_health(self, process: str, rows: list[tuple[str, str, bytes]], now: float) -> None:
        """Replace an engine process's snapshot of its connectors; drop snapshots older than a day."""

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM connector_health WHERE process = ? OR at < ?", (process, now - 86400))
            conn.executemany(
                "INSERT INTO connector_health(process, connector, channel, at, data) VALUES (?, ?, ?, ?, ?)",
                [(process, name, channel, now, data.decode()) for name, channel, data in rows],
            )

        await self.writer.run(fn)

    async def connector_health(self) -> list[tuple[str, str, str, float, bytes]]:
        """Every stored snapshot of connectors: (process, connector, channel, at, JSON)."""
        rows = self._all(
            "SELECT process, connector, channel, at, data FROM connector_health ORDER BY connector, process"
        )
        return [(r[0], r[1], r[2], r[3], r[4].encode()) for r in rows]


def _store_inbound(conn: sqlite3.Connection, messages: list[InboundMessage], now: float, build: Build) -> None:
    """Keep complete inbound messages for the pull and queue their webhooks."""
    kept, pushed = message_rows(messages, now, build)
    conn.executemany("INSERT INTO inbound_messages(account_id, received_at, body) VALUES (?, ?, ?)", kept)
    conn.executemany(
        "INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(report_id) DO NOTHING",
        pushed,
    )


def upsert_rollups(conn: sqlite3.Connection, rows: list[rollups.Row]) -> None:
    """Add ``rows`` to the rollups: one statement for the whole transaction, a row per key."""
    if rows:
        conn.executemany(SqliteDialect.q.upsert_rollups, rollup_rows(SqliteStore.dialect, rows))


def logs_statement(account_id: int, query: LogQuery) -> tuple[str, list[Any]]:
    """The statement of :meth:`SqliteStore.logs` and its arguments (each filter given has an index to read)."""
    where, args = log_filters(account_id, query)
    sql = (
        f"SELECT {VIEW_COLS} FROM messages m JOIN requests r ON r.id = m.request_id WHERE {' AND '.join(where)}"
        " ORDER BY m.created_at DESC, m.id DESC LIMIT ?"
    )
    return sql, [*args, query.limit]


def log_filters(account_id: int, query: LogQuery) -> tuple[list[str], list[Any]]:
    """The conditions of the logs' filters (on ``messages m``) and their arguments."""
    where: list[str] = ["m.account_id = ?", "m.created_at >= ?"]
    args: list[Any] = [account_id, query.since]
    if query.until is not None:
        where.append("m.created_at <= ?")
        args.append(query.until)
    for column, values in (("m.bulk_id", query.bulk_ids), ("m.message_id", query.message_ids)):
        if values:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)
    if query.to is not None:
        where.append("instr(m.to_json, ?) > 0")
        args.append(msgspec.json.encode(query.to).decode())
    for column, value in (
        ("m.status_group", query.status_group),
        ("m.channel", query.channel),
        ("m.sender", query.sender),
        ("m.mcc", query.mcc),
        ("m.mnc", query.mnc),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    return where, args


def search_filters(account_id: int, search: MessageSearch) -> tuple[list[str], list[Any]]:
    """The conditions of a console search: the logs' filters and the error name."""
    where, args = log_filters(account_id, search.filters)
    if search.error is not None:
        where.append("instr(m.state, ?) > 0")
        args.append(error_needle(search.error))
    return where, args
