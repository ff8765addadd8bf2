"""The embedded store: one SQLite file in WAL mode, written by a single group-commit writer thread.

Reads run on a connection of the event loop's thread (WAL lets them proceed beside the writer); every
write goes through :class:`~omnirelay.store.writer.Writer`, so requests arriving together share a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec

from omnirelay.domain import rollups
from omnirelay.domain.catalogue import REJECTED_GROUP
from omnirelay.domain.delivery import Receipt
from omnirelay.store import queries
from omnirelay.store.base import (
    Change,
    NewMessage,
    ScenarioRecord,
    Stored,
    Work,
)
from omnirelay.store.flow import All, Call, Each, Exec, Flow, One, Rows, Step, Value, statements
from omnirelay.store.rows import (
    ROLLUP_KEEP_S,
    WORK_COLS,
    AcceptItem,
    accept_rollup,
    plan_accepts,
    receipt_data,
    receipt_job,
    supplied_ids,
)
from omnirelay.store.sqlstore import SqlStore
from omnirelay.store.writer import Writer

T = TypeVar("T")
_MISSING = object()
WATCH_SECONDS = 0.005
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

    def placeholder(self, n: int) -> str:
        return f"?{n}"

    def one_of(self, column: str, values: Sequence[str], arg: Callable[[Any], str]) -> str:
        # one argument a value: the index on the column is read once per value
        return f"{column} IN ({','.join(arg(v) for v in values)})"

    def contains_text(self, column: str, needle: str) -> str:
        return f"instr({column}, {needle}) > 0"

    def contains_bytes(self, column: str, needle: str) -> str:
        return f"instr({column}, {needle}) > 0"

    def add_rollups(self, conn: sqlite3.Connection, rows: list[rollups.Row]) -> None:
        upsert_rollups(conn, rows)


def run_flow(conn: sqlite3.Connection, flow: Flow[T]) -> T:
    """Run ``flow`` on ``conn``, synchronously (the writer thread's connection, or the read connection)."""
    send: Callable[[Any], Step] = flow.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            value, send = _execute(conn, step), flow.send
        except Exception as exc:
            value, send = exc, flow.throw


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

    async def _read(self, flow: Flow[T]) -> T:
        return run_flow(self._read_conn, flow)

    async def _write(self, flow: Flow[T]) -> T:
        return await self.writer.run(lambda conn: run_flow(conn, flow))

    async def _write_statement(self, flow: Flow[T]) -> T:
        return await self._write(flow)

    def _scenarios_written(self) -> None:
        self._scenarios.clear()

    async def _cached_scenario(
        self, key: tuple[int, str | None], read: Callable[[], Flow[ScenarioRecord | None]]
    ) -> ScenarioRecord | None:
        cached = self._scenarios.get(key, _MISSING)
        if cached is _MISSING:
            cached = self._scenarios[key] = await self._read(read())
        return cached  # type: ignore[return-value]

    def _webhooks_queued(self) -> None:
        self._on_outbox()

    def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self._read_conn.execute(sql, tuple(args)).fetchone()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        return self._read_conn.execute(sql, tuple(args)).fetchall()

    # --- sending -------------------------------------------------------------------------------

    async def accept(
        self,
        account_id: int,
        payload: bytes,
        bulk_id: str | None,
        messages: list[NewMessage],
        start_at: float,
        now: float,
    ) -> list[Stored]:
        """Store one request's messages; answered once the group transaction holding them committed.

        (Collecting requests into one writer function per turn of the event loop was measured: slower, since
        requests rarely share a turn and the writer already commits all that is queued together. Merging the
        requests queued for one transaction into one call, in the writer, made no measurable difference.)
        """
        item = AcceptItem(account_id, payload, bulk_id, messages, start_at, now)
        (outcome,) = await self.writer.run(lambda conn: _accept_batch(conn, [item]))
        return outcome

    # --- engine --------------------------------------------------------------------------------

    async def engine_step(
        self,
        now: float,
        limit: int,
        events: list[tuple[int, bytes]],
        handle: Callable[[list[Work]], tuple[list[Change], T]],
        later: list[tuple[int, str, int, float, bytes]] | None = None,
    ) -> tuple[T, T]:
        """One engine transaction: record ``events`` (channel answers) and store the ``later`` jobs, then take up
        to ``limit`` due jobs (those the events just made due included); ``handle`` decides each part.

        Claimed jobs are deleted in the same transaction that stores their consequences, so a crash
        either keeps a job (and nothing happened) or has its whole effect.
        """

        def fn(conn: sqlite3.Connection) -> tuple[T, T]:
            if later:
                conn.executemany("INSERT INTO jobs(message, kind, step, due_at, data) VALUES (?, ?, ?, ?, ?)", later)
            recorded = _decide_and_apply(conn, [(None, m, e) for m, e in events], handle, now)
            jobs: list[tuple[int | None, int, bytes | None]] = []
            if limit > 0:
                # Messages already under way go before new ones: a failover is not queued behind a burst.
                for kinds in ("kind <> 'start'", "kind = 'start'"):
                    jobs += conn.execute(
                        f"SELECT id, message, data FROM jobs WHERE {kinds} AND due_at <= ? ORDER BY due_at, id LIMIT ?",
                        (now, limit - len(jobs)),
                    ).fetchall()
                conn.executemany("DELETE FROM jobs WHERE id = ?", [(j[0],) for j in jobs])
            claimed = _decide_and_apply(conn, jobs, handle, now)
            return recorded, claimed

        return await self.writer.run(fn)

    async def purge(self, before: float, limit: int) -> int:
        """Remove up to ``limit`` messages finished before ``before``, with what belongs to them only."""

        def fn(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT id, request_id FROM messages WHERE done_at IS NOT NULL AND done_at < ? LIMIT ?", (before, limit)
            ).fetchall()
            messages = [(r[0],) for r in rows]
            for table in ("submissions", "jobs", "reports"):
                conn.executemany(f"DELETE FROM {table} WHERE message = ?", messages)
            conn.execute("DELETE FROM held_receipts WHERE at < ?", (before,))
            now = time.time()
            for span, keep_s in ROLLUP_KEEP_S.items():  # rollups outlive their messages, see ROLLUP_KEEP_S
                conn.execute("DELETE FROM rollups WHERE span = ? AND at < ?", (span, now - keep_s))
            conn.executemany("DELETE FROM messages WHERE id = ?", messages)
            conn.executemany(
                "DELETE FROM requests WHERE id = ? AND NOT EXISTS (SELECT 1 FROM messages WHERE request_id = ?)",
                [(r, r) for r in {r[1] for r in rows}],
            )
            return len(rows)

        return await self.writer.run(fn)


    # --- connectors ----------------------------------------------------------------------------

    async def record_receipts(self, receipts: list[Receipt], now: float) -> None:
        """Queue receipts for the engine by their submission's (channel, provider_id), holding the early ones."""

        def fn(conn: sqlite3.Connection) -> None:
            jobs, held = [], []
            for r in receipts:
                found = conn.execute(
                    "SELECT message, step FROM submissions WHERE channel = ? AND provider_id = ? ORDER BY at DESC",
                    (r.channel, r.provider_id),
                ).fetchone()
                if found is None:
                    held.append((r.channel, r.provider_id, receipt_data(r), now))
                else:
                    jobs.append(receipt_job(found[0], found[1], receipt_data(r), now))
            conn.executemany("INSERT INTO jobs(message, kind, step, due_at, data) VALUES (?, ?, ?, ?, ?)", jobs)
            conn.executemany("INSERT INTO held_receipts(channel, provider_id, data, at) VALUES (?, ?, ?, ?)", held)

        await self.writer.run(fn)
        self._on_jobs()



def upsert_rollups(conn: sqlite3.Connection, rows: list[rollups.Row]) -> None:
    """Add ``rows`` to the rollups: one statement for the whole transaction, a row per key."""
    if rows:
        conn.executemany(
            "INSERT INTO rollups(account_id, span, at, shard, kind, channel, step, grp, error, bucket, n, cost)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n,"
            " cost = cost + excluded.cost",
            [(*key, n, cost) for key, n, cost in rollups.keyed(rows)],
        )


def _accept_batch(conn: sqlite3.Connection, items: list[AcceptItem]) -> list[list[Stored]]:
    """Insert a batch of accepted requests; the answer of each."""
    existing: dict[tuple[int, str], tuple[bytes, bytes, str | None]] = {}
    wanted = supplied_ids(items)
    for start in range(0, len(wanted), 400):
        chunk = wanted[start : start + 400]
        for account, message_id, *found in conn.execute(
            "SELECT account_id, message_id, content_hash, to_json, bulk_id FROM messages WHERE"
            f" (account_id, message_id) IN (VALUES {','.join(['(?, ?)'] * len(chunk))})",
            [v for pair in chunk for v in pair],
        ):
            existing[(account, message_id)] = (found[0], found[1], found[2])
    plan = plan_accepts(items, existing)
    tally: list[rollups.Row] = []
    for index, fresh in plan.fresh:
        item = items[index]
        tally += accept_rollup(item, fresh)
        messages = [m for m in fresh if not m.rejected]
        refused = [m for m in fresh if m.rejected] if len(messages) < len(fresh) else []
        request_id = conn.execute(
            "INSERT INTO requests(account_id, payload) VALUES (?, ?)", (item.account_id, item.payload)
        ).lastrowid
        # The request's own values are parameters 1-5 of every row, bound once per statement (a request's messages
        # start from the same step, so from the same sender); each message adds 7.
        shared: list[Any] = [item.account_id, request_id, item.bulk_id, item.now, (messages or fresh)[0].sender]
        values = [
            v for m in messages for v in (m.message_id, m.to_json, m.content_hash, m.state, m.address, m.mcc, m.mnc)
        ]
        # Statements of 100, then 10, then 1 row: a statement step per row cost as much again as the insert itself
        # (measured: 3.8 -> 2.1 µs a message). Each size's statement is compiled once and cached by sqlite3.
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
    upsert_rollups(conn, tally)
    return plan.answers(items)


def _decide_and_apply(
    conn: sqlite3.Connection,
    jobs: list[tuple[int | None, int, bytes | None]],
    handle: Callable[[list[Work]], tuple[list[Change], T]],
    now: float,
) -> T:
    """Load the messages of ``jobs``, let ``handle`` decide, write the changes."""
    ids = sorted({m for _j, m, _e in jobs})
    records: dict[int, Any] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for row in conn.execute(
            f"SELECT {WORK_COLS}, (SELECT json_group_object(c.channel, c.until) FROM capabilities c"
            "  WHERE c.account_id = m.account_id AND c.address = m.address AND c.until > ?)"
            " FROM messages m JOIN requests r ON r.id = m.request_id"
            f" WHERE m.id IN ({','.join('?' * len(chunk))})",
            [now, *chunk],
        ):
            records[row[0]] = row
    work = [Work(job_id, event or b'{"type":"start"}', *records[m]) for job_id, m, event in jobs if m in records]
    changes, result = handle(work)
    _apply(conn, changes, now)
    return result


def _apply(conn: sqlite3.Connection, changes: list[Change], now: float) -> None:
    """Write the engine's changes with one statement per kind of row."""
    # The logs' filter columns only where they change: setting an indexed column rewrites its index entries.
    conn.executemany(
        "UPDATE messages SET state = ?, status_group = ?, channel = ?, done_at = ? WHERE id = ?",
        [(c.state, c.status_group, c.channel, c.done_at, c.message) for c in changes if c.columns is None],
    )
    conn.executemany(
        "UPDATE messages SET state = ?, status_group = ?, channel = ?, done_at = ?, sender = ?, mcc = ?, mnc = ?"
        " WHERE id = ?",
        [(c.state, c.status_group, c.channel, c.done_at, *c.columns, c.message) for c in changes if c.columns],
    )
    conn.executemany(
        "DELETE FROM jobs WHERE message = ? AND kind = 'expire'",
        [(c.message,) for c in changes if c.cancel_expiry],
    )
    conn.executemany(
        "INSERT INTO jobs(message, kind, step, due_at, data) VALUES (?, ?, ?, ?, ?)",
        [(c.message, kind, step, due, data) for c in changes for kind, step, due, data in c.jobs],
    )
    conn.executemany(
        "INSERT INTO reports(account_id, message, message_id, bulk_id, channel, body) VALUES (?, ?, ?, ?, ?, ?)",
        [(c.account_id, c.message, *c.report) for c in changes if c.report is not None],
    )
    conn.executemany(  # in the order of c.webhooks: the order a message's reports are posted in
        "INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at, message)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(report_id) DO NOTHING",
        [(c.account_id, *w, now, c.message) for c in changes for w in c.webhooks],
    )
    conn.executemany(
        "INSERT INTO capabilities(account_id, channel, address, until) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(account_id, address, channel) DO UPDATE SET until = excluded.until",
        [(c.account_id, *r) for c in changes for r in c.remember],
    )
    submitted = [(c.message, *sub, now) for c in changes for sub in c.submitted]
    conn.executemany(
        "INSERT INTO submissions(message, step, channel, provider_id, at) VALUES (?, ?, ?, ?, ?)", submitted
    )
    upsert_rollups(conn, [row for c in changes for row in c.rollup])
    if any(sub[3] for sub in submitted) and conn.execute("SELECT 1 FROM held_receipts LIMIT 1").fetchone():
        # receipts that came before their provider id was stored (a fast SMSC, a webhook racing the answer)
        matched = conn.execute(
            "SELECT h.id, s.message, s.step, h.data FROM held_receipts h"
            " JOIN submissions s ON s.channel = h.channel AND s.provider_id = h.provider_id"
        ).fetchall()
        conn.executemany(
            "INSERT INTO jobs(message, kind, step, due_at, data) VALUES (?, ?, ?, ?, ?)",
            [receipt_job(m, step, data, now) for _h, m, step, data in matched],
        )
        conn.executemany("DELETE FROM held_receipts WHERE id = ?", [(h,) for h, *_ in matched])
