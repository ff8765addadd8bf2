"""The scale-out store: PostgreSQL through asyncpg, shared by any number of API and worker processes.

Accepts are group-committed: requests that arrive while a transaction is under way wait for the next one,
which inserts all their rows with a handful of array statements. The engine claims due jobs with
``FOR UPDATE SKIP LOCKED`` (no two workers take the same job) and locks the jobs' messages, so two workers
never decide on one message at once; a claimed job is deleted in the transaction that stores its
consequences, so a worker killed mid-batch loses nothing: its transaction rolls back and the jobs are due
again at once. LISTEN/NOTIFY wakes idle workers and notifiers.

Every queue (jobs, reports, webhook deliveries, inbound messages) is taken as ``... WHERE id =
ANY(ARRAY(SELECT id ... LIMIT n FOR UPDATE SKIP LOCKED))``: the sub-select runs once. Written as ``id IN
(SELECT ...)``, a planner with stale statistics (a queue table is emptied as fast as it is filled) chose a
nested loop that ran the sub-select again for every row of the table, and pulling reports went from
milliseconds to tens of seconds once 60,000 messages had passed (measured with ``bench/pipeline.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, TypeAlias, TypeVar

import asyncpg

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
from omnirelay.store.errors import UNAVAILABLE
from omnirelay.store.flow import All, Call, Each, Exec, Flow, One, Rows, Step, Value, columns, statements
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

T = TypeVar("T")
log = logging.getLogger("omnirelay.store")

JOBS_CHANNEL = "omnirelay_jobs"
OUTBOX_CHANNEL = "omnirelay_outbox"
SCENARIOS_CHANNEL = "omnirelay_scenarios"
"""Notified with every change of scenarios: API processes drop the scenarios they cache."""
#: Advisory lock between storing receipts (exclusive) and storing provider ids (shared): without it, a receipt
#: and its submission committed at the same moment would each miss the other, and the receipt stay held.
RECEIPTS_LOCK = 7302
#: Rollup rows per key, one for each of this many writers (by process id): API and worker processes adding to the
#: same minute of an account seldom wait for each other's row locks.
ROLLUP_SHARDS = 4

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"


class SchemaError(RuntimeError):
    """The database's schema is not the one this program knows."""


def migrations() -> list[tuple[int, str]]:
    """The numbered PostgreSQL schema scripts shipped with the package, in order."""
    folder = resources.files("omnirelay.store") / "sql" / "postgres"
    found = [(int(e.name.split("_", 1)[0]), e.read_text()) for e in folder.iterdir() if e.name.endswith(".sql")]
    return sorted(found)


async def schema_version(conn: Conn) -> int:
    """The version of the schema in the database (0 for an empty one)."""
    exists = await conn.fetchval("SELECT to_regclass('omnirelay_schema') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM omnirelay_schema"))


async def migrate(dsn: str) -> int:
    """Create or upgrade the schema; returns the version. Safe to run from several machines at once."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock(7301)")
        await conn.execute("CREATE TABLE IF NOT EXISTS omnirelay_schema (version integer PRIMARY KEY, at timestamptz)")
        version = await schema_version(conn)
        known = migrations()
        if version > known[-1][0]:
            raise SchemaError(_newer(version, known[-1][0]))
        for number, script in known:
            if number > version:
                async with conn.transaction():
                    await conn.execute(script)
                    await conn.execute("INSERT INTO omnirelay_schema VALUES ($1, now())", number)
                version = number
        return version
    finally:
        await conn.close()


def _newer(found: int, latest: int) -> str:
    return f"the database has schema version {found}, but this omnirelay knows only up to {latest}: upgrade omnirelay"


class _Retry(Exception):
    """Another process inserted one of our client-supplied message ids meanwhile: run the batch again."""


class _Pool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg has no type information
    """A pool whose giving back of a connection never fails the work done on it.

    asyncpg resets a connection as it comes back; when the server went away meanwhile, that reset raises (a
    socket error, or ``InternalClientError: cannot switch to state 15``) after the transaction committed, and
    the caller would report a stored request as failed. The broken connection is closed either way.
    """

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        try:
            await super().release(connection, timeout=timeout)
        except UNAVAILABLE as exc:
            log.warning("a database connection broke as it was given back (closed): %r", exc)


class PostgresDialect:
    """PostgreSQL's statements and the builders of the SQL that depends on a request."""

    q = queries.load("postgres")

    def placeholder(self, n: int) -> str:
        return f"${n}"

    def one_of(self, column: str, values: Sequence[str], arg: Callable[[Any], str]) -> str:
        # one array argument: the statement's text is the same whatever the number of values (one prepared plan)
        return f"{column} = ANY({arg(list(values))}::text[])"

    def contains_text(self, column: str, needle: str) -> str:
        return f"position({needle} in convert_from({column}, 'UTF8')) > 0"

    def contains_bytes(self, column: str, needle: str) -> str:
        return f"position({needle}::bytea in {column}) > 0"

    async def add_rollups(self, conn: Conn, rows: list[rollups.Row]) -> None:
        await conn.execute(upsert_rollups_sql(1), *_rollup_columns(rows))


async def run_flow(conn: Conn | asyncpg.Pool, flow: Flow[T]) -> T:
    """Run ``flow`` on ``conn`` (a connection in a transaction, or the pool for a flow that only reads)."""
    send: Callable[[Any], Step] = flow.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            value, send = await _execute(conn, step), flow.send
        except Exception as exc:
            value, send = exc, flow.throw


async def _execute(conn: Conn | asyncpg.Pool, step: Step) -> Any:
    if isinstance(step, Call):
        return await step.fn(conn, *step.args)
    kind, sql = type(step), step.sql
    if kind is Rows:
        if sql and step.args[0]:
            await conn.execute(sql, *columns(step.args[0]))
        return None
    if not sql:
        return [] if kind is All else 0 if kind is Exec else None
    if kind is Each:
        for statement in statements(sql):
            await conn.execute(statement, *step.args)
        return None
    if kind is One:
        return await conn.fetchrow(sql, *step.args)
    if kind is All:
        return await conn.fetch(sql, *step.args)
    if kind is Value:
        return await conn.fetchval(sql, *step.args)
    status = await conn.execute(sql, *step.args)
    count = status.rsplit(" ", 1)[-1]
    return int(count) if count.isdigit() else 0


class PostgresStore(SqlStore):
    """The :class:`~omnirelay.store.base.Store` on PostgreSQL."""

    dialect = PostgresDialect()

    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self.dsn = dsn
        self.pool = pool
        self._queue: list[tuple[AcceptItem, asyncio.Future[list[Stored]]]] = []
        self._flushers = 0
        self._listener: asyncio.Task[None] | None = None
        # Scenarios as sends read them, kept only while this process listens for their changes (a query per
        # send was a quarter of an API process's time). `_generation` moves on with every change, so a read
        # that raced a change is not kept.
        self._scenarios: dict[tuple[int, str | None], ScenarioRecord | None] = {}
        self._scenarios_live = False
        self._generation = 0
        self._scenario_watch: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, dsn: str, min_size: int = 2, max_size: int = 10) -> PostgresStore:
        """Connect; refuses a database whose schema is missing or unknown (run ``omnirelay migrate``)."""
        pool = await _Pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            max_queries=50_000,
            max_inactive_connection_lifetime=300.0,
            loop=None,
            connection_class=asyncpg.Connection,
            record_class=asyncpg.Record,
        )
        async with pool.acquire() as conn:
            version = await schema_version(conn)
        latest = migrations()[-1][0]
        if version != latest:
            await pool.close()
            if version > latest:
                raise SchemaError(_newer(version, latest))
            raise SchemaError(
                f"the database has schema version {version}, this omnirelay needs {latest}: run `omnirelay migrate`"
            )
        return cls(dsn, pool)

    async def close(self) -> None:
        """Stop listening and close the connections."""
        for task in (self._listener, self._scenario_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.pool.close()

    # --- notifications -------------------------------------------------------------------------

    def subscribe(self, on_jobs: Callable[[], None], on_outbox: Callable[[], None]) -> None:
        """Call ``on_jobs`` / ``on_outbox`` when any process stores new jobs / webhook deliveries."""
        channels = {JOBS_CHANNEL: on_jobs, OUTBOX_CHANNEL: on_outbox}
        self._listener = asyncio.create_task(self._listen(channels), name="pg-listen")

    async def _listen(
        self,
        channels: dict[str, Callable[[], None]],
        up: Callable[[], None] = lambda: None,
        down: Callable[[], None] = lambda: None,
    ) -> None:
        """Keep a connection listening on ``channels``, reconnecting after a loss; ``up`` once it listens, ``down``
        once it stopped."""
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(1.0)
                continue
            try:
                for channel, callback in channels.items():
                    await conn.add_listener(channel, lambda *_, callback=callback: callback())
                up()
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
                    with contextlib.suppress(Exception):
                        await conn.execute("SELECT 1")
            finally:
                down()
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _read(self, flow: Flow[T]) -> T:
        return await run_flow(self.pool, flow)

    async def _write(self, flow: Flow[T]) -> T:
        async with self.pool.acquire() as conn, conn.transaction():
            return await run_flow(conn, flow)

    async def _write_statement(self, flow: Flow[T]) -> T:
        return await run_flow(self.pool, flow)

    def _scenarios_written(self) -> None:
        self._scenarios_changed()

    def _scenarios_changed(self) -> None:
        self._generation += 1
        self._scenarios.clear()

    def _scenarios_listening(self, live: bool) -> None:
        self._scenarios_changed()  # what was read while not listening may be stale
        self._scenarios_live = live

    async def _cached_scenario(
        self, key: tuple[int, str | None], read: Callable[[], Flow[ScenarioRecord | None]]
    ) -> ScenarioRecord | None:
        if self._scenario_watch is None:
            watch = self._listen(
                {SCENARIOS_CHANNEL: self._scenarios_changed},
                up=lambda: self._scenarios_listening(True),
                down=lambda: self._scenarios_listening(False),
            )
            self._scenario_watch = asyncio.get_running_loop().create_task(watch, name="pg-scenarios")
        if self._scenarios_live and key in self._scenarios:
            return self._scenarios[key]
        generation = self._generation
        found = await self._read(read())
        if self._scenarios_live and generation == self._generation:
            self._scenarios[key] = found
        return found

    # --- sending (group commit) ------------------------------------------------------------------

    async def accept(
        self,
        account_id: int,
        payload: bytes,
        bulk_id: str | None,
        messages: list[NewMessage],
        start_at: float,
        now: float,
    ) -> list[Stored]:
        """Store one request's messages; answered once the group transaction holding them committed."""
        future: asyncio.Future[list[Stored]] = asyncio.get_running_loop().create_future()
        self._queue.append((AcceptItem(account_id, payload, bulk_id, messages, start_at, now), future))
        if self._flushers < 2:
            self._flushers += 1
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                waiting, self._queue = self._queue, []
                outcomes = await self._settle_batch([item for item, _ in waiting])
                for (_, future), outcome in zip(waiting, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._flushers -= 1

    async def _settle_batch(self, items: list[AcceptItem]) -> list[list[Stored] | BaseException]:
        """Each request's answer from one group transaction. When the transaction fails, nothing of it is stored:
        a failure of the database itself (unreachable, full, read-only) is every request's answer; any other may
        be one request's doing (text the database refuses), so the halves are tried on their own, down to the
        culprit, and every other request is answered."""
        error: BaseException = RuntimeError("not run")
        for _attempt in range(3):
            try:
                return list(await self._accept_batch(items))
            except _Retry as exc:  # another process took a client message id meanwhile: decide again
                error = exc
            except Exception as exc:
                error = exc
                break
        if len(items) == 1 or isinstance(error, (*UNAVAILABLE, _Retry)):
            return [error] * len(items)
        half = len(items) // 2
        return await self._settle_batch(items[:half]) + await self._settle_batch(items[half:])

    async def _accept_batch(self, items: list[AcceptItem]) -> list[list[Stored]]:
        async with self.pool.acquire() as conn, conn.transaction():
            wanted = supplied_ids(items)
            existing: dict[tuple[int, str], tuple[bytes, bytes, str | None]] = {}
            if wanted:
                rows = await conn.fetch(
                    "SELECT account_id, message_id, content_hash, to_json, bulk_id FROM messages"
                    " WHERE (account_id, message_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))",
                    [a for a, _ in wanted],
                    [m for _, m in wanted],
                )
                existing = {(r[0], r[1]): (bytes(r[2]), bytes(r[3]), r[4]) for r in rows}
            plan = plan_accepts(items, existing)
            if plan.fresh:
                requests = [i for i, _ in plan.fresh]
                fresh = [(i, m) for i, messages in plan.fresh for m in messages]
                request_ids, message_ids = await conn.fetchrow(
                    "SELECT array(SELECT nextval('requests_id_seq') FROM generate_series(1, $1)),"
                    " array(SELECT nextval('messages_id_seq') FROM generate_series(1, $2))",
                    len(requests),
                    len(fresh),
                )
                rid = dict(zip(requests, request_ids, strict=True))
                # One statement (a round trip each cost more than the inserts): the requests, their messages, a
                # start job for each message stored but not refused (those are stored finished: a done time and
                # status group 5), the workers' wake-up (sent on commit); it answers how many messages were
                # stored, fewer when another process took a client message id meanwhile.
                stored = await conn.fetchval(
                    "WITH r AS (INSERT INTO requests(id, account_id, payload)"
                    "  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])),"
                    " m AS (INSERT INTO messages(id, account_id, message_id, request_id, bulk_id, to_json,"
                    "  content_hash, created_at, state, address, status_group, done_at, sender, mcc, mnc)"
                    "  SELECT u.id, u.a, u.mid, u.r, u.b, u.t, u.h, u.c, u.s, u.ad,"
                    "  CASE WHEN u.done IS NULL THEN 1 ELSE $15::smallint END, u.done, u.se, u.mcc, u.mnc"
                    "  FROM unnest($4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::text[], $9::bytea[],"
                    "  $10::bytea[], $11::float8[], $12::bytea[], $13::text[], $16::float8[], $17::text[], $18::text[],"
                    "  $19::text[]) AS u(id, a, mid, r, b, t, h, c, s, ad, done, se, mcc, mnc)"
                    "  ON CONFLICT (account_id, message_id) DO NOTHING RETURNING id, done_at),"
                    " j AS (INSERT INTO jobs(message, kind, due_at) SELECT u.m, 'start', u.d"
                    "  FROM unnest($4::bigint[], $14::float8[]) AS u(m, d) JOIN m ON m.id = u.m"
                    "  WHERE m.done_at IS NULL),"
                    f" ru AS ({upsert_rollups_sql(20)})"
                    f" SELECT (SELECT count(*) FROM m) FROM pg_notify('{JOBS_CHANNEL}', '')",
                    request_ids,
                    [items[i].account_id for i in requests],
                    [items[i].payload for i in requests],
                    message_ids,
                    [items[i].account_id for i, _ in fresh],
                    [m.message_id for _, m in fresh],
                    [rid[i] for i, _ in fresh],
                    [items[i].bulk_id for i, _ in fresh],
                    [m.to_json for _, m in fresh],
                    [m.content_hash for _, m in fresh],
                    [items[i].now for i, _ in fresh],
                    [m.state for _, m in fresh],
                    [m.address for _, m in fresh],
                    [items[i].start_at for i, _ in fresh],
                    REJECTED_GROUP,
                    [items[i].now if m.rejected else None for i, m in fresh],
                    [m.sender for _, m in fresh],
                    [m.mcc for _, m in fresh],
                    [m.mnc for _, m in fresh],
                    *_rollup_columns([row for i, messages in plan.fresh for row in accept_rollup(items[i], messages)]),
                )
                if stored != len(fresh):
                    raise _Retry
        return plan.answers(items)

    # --- engine --------------------------------------------------------------------------------

    async def engine_step(
        self,
        now: float,
        limit: int,
        events: list[tuple[int, bytes]],
        handle: Callable[[list[Work]], tuple[list[Change], T]],
        later: list[tuple[int, str, int, float, bytes]] | None = None,
    ) -> tuple[T, T]:
        """As :meth:`omnirelay.store.sqlite.SqliteStore.engine_step`, safe with many workers at once."""
        async with self.pool.acquire() as conn, conn.transaction():
            if later:
                await conn.execute(
                    "INSERT INTO jobs(message, kind, step, due_at, data)"
                    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::float8[], $5::bytea[])",
                    *_columns(later, 5),
                )
            recorded = await self._decide_and_apply(conn, [(None, m, e) for m, e in events], handle, now)
            jobs: list[tuple[int | None, int, bytes | None]] = []
            if limit > 0:
                # Messages already under way go before new ones: a failover is not queued behind a burst.
                for kinds in ("kind <> 'start'", "kind = 'start'"):
                    rows = await conn.fetch(
                        f"DELETE FROM jobs WHERE id = ANY(ARRAY(SELECT id FROM jobs WHERE {kinds} AND due_at <= $1"
                        " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING id, message, data, due_at",
                        now,
                        limit - len(jobs),
                    )
                    jobs += [(r[0], r[1], r[2]) for r in sorted(rows, key=lambda r: (r[3], r[0]))]
            claimed = await self._decide_and_apply(conn, jobs, handle, now)
        return recorded, claimed

    async def _decide_and_apply(
        self,
        conn: Conn,
        jobs: Sequence[tuple[int | None, int, bytes | None]],
        handle: Callable[[list[Work]], tuple[list[Change], T]],
        now: float,
    ) -> T:
        ids = sorted({m for _j, m, _e in jobs})
        records: dict[int, Any] = {}
        if ids:
            rows = await conn.fetch(
                f"SELECT {WORK_COLS}, (SELECT json_object_agg(c.channel, c.until)::text FROM capabilities c"
                "  WHERE c.account_id = m.account_id AND c.address = m.address AND c.until > $2)"
                " FROM messages m JOIN requests r ON r.id = m.request_id WHERE m.id = ANY($1::bigint[])"
                " ORDER BY m.id FOR UPDATE OF m",
                ids,
                now,
            )
            records = {r[0]: r for r in rows}
        work = []
        for job_id, m, event in jobs:
            r = records.get(m)
            if r is not None:
                blocked = r[9].encode() if r[9] else None
                work.append(
                    Work(
                        job_id=job_id,
                        event=event or b'{"type":"start"}',
                        message=r[0],
                        account_id=r[1],
                        message_id=r[2],
                        bulk_id=r[3],
                        to_json=bytes(r[4]),
                        created_at=r[5],
                        state=bytes(r[6]),
                        request_id=r[7],
                        payload=bytes(r[8]),
                        blocked=blocked,
                    )
                )
        changes, result = handle(work)
        if changes:
            await _apply(conn, changes, now)
        return result

    async def purge(self, before: float, limit: int) -> int:
        """Remove up to ``limit`` messages finished before ``before``, with what belongs to them only."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, request_id FROM messages WHERE done_at IS NOT NULL AND done_at < $1 LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                before,
                limit,
            )
            # receipts of ids never submitted here (another system on the same number) are not kept forever
            await conn.execute("DELETE FROM held_receipts WHERE at < $1", before)
            now = time.time()
            for span, keep_s in ROLLUP_KEEP_S.items():  # rollups outlive their messages, see ROLLUP_KEEP_S
                await conn.execute("DELETE FROM rollups WHERE span = $1 AND at < $2", span, now - keep_s)
            messages = [r[0] for r in rows]
            if not messages:
                return 0
            for table in ("submissions", "jobs", "reports"):
                await conn.execute(f"DELETE FROM {table} WHERE message = ANY($1::bigint[])", messages)
            await conn.execute("DELETE FROM messages WHERE id = ANY($1::bigint[])", messages)
            await conn.execute(
                "DELETE FROM requests r WHERE r.id = ANY($1::bigint[])"
                " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.request_id = r.id)",
                list({r[1] for r in rows}),
            )
            return len(messages)


    # --- connectors ----------------------------------------------------------------------------

    async def record_receipts(self, receipts: list[Receipt], now: float) -> None:
        """Queue receipts for the engine by their submission's (channel, provider_id), holding the early ones."""
        keys = [(r.channel, r.provider_id) for r in receipts]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", RECEIPTS_LOCK)
            rows = await conn.fetch(
                "SELECT DISTINCT ON (s.channel, s.provider_id) s.channel, s.provider_id, s.message, s.step"
                " FROM submissions s JOIN unnest($1::text[], $2::text[]) AS k(channel, provider_id)"
                " ON s.channel = k.channel AND s.provider_id = k.provider_id"
                " ORDER BY s.channel, s.provider_id, s.at DESC",
                *_columns(keys, 2),
            )
            found = {(r[0], r[1]): (r[2], r[3]) for r in rows}
            jobs, held = [], []
            for r, key in zip(receipts, keys, strict=True):
                step = found.get(key)
                if step is None:
                    held.append((*key, receipt_data(r), now))
                else:
                    jobs.append(receipt_job(*step, receipt_data(r), now))
            if jobs:
                await conn.execute(
                    "INSERT INTO jobs(message, kind, step, due_at, data)"
                    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::float8[], $5::bytea[])",
                    *_columns(jobs, 5),
                )
                await conn.execute(f"NOTIFY {JOBS_CHANNEL}")
            if held:
                await conn.execute(
                    "INSERT INTO held_receipts(channel, provider_id, data, at)"
                    " SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::float8[])",
                    *_columns(held, 4),
                )



_ROLLUP_TYPES = (
    "bigint", "int", "bigint", "smallint", "text", "text", "int", "smallint", "text", "int", "bigint", "float8"
)


def upsert_rollups_sql(first: int) -> str:
    """The statement that adds rollup rows given as 12 arrays, parameters ``$first`` on (each key once, sorted:
    the order its row locks are taken in)."""
    arrays = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(_ROLLUP_TYPES))
    return (
        "INSERT INTO rollups(account_id, span, at, shard, kind, channel, step, grp, error, bucket, n, cost)"
        f" SELECT * FROM unnest({arrays}) ON CONFLICT (account_id, span, at, shard, kind, channel, step, grp, error,"
        " bucket) DO UPDATE SET n = rollups.n + excluded.n, cost = rollups.cost + excluded.cost"
    )


def _rollup_columns(rows: list[rollups.Row]) -> list[list[Any]]:
    """Rollup rows as the 12 arrays of :func:`upsert_rollups_sql`."""
    return _columns([(*key, n, cost) for key, n, cost in rollups.keyed(rows, os.getpid() % ROLLUP_SHARDS)], 12)


_NO = (None, None, None)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as column lists, for ``unnest``."""
    return [[r[i] for r in rows] for i in range(width)]


async def _apply(conn: Conn, changes: list[Change], now: float) -> None:
    """Write the engine's changes with one statement per kind of row."""
    await conn.execute(
        "UPDATE messages AS m SET state = u.state, status_group = u.sg, channel = u.ch, done_at = u.done,"
        " sender = CASE WHEN u.cols THEN u.sender ELSE m.sender END, mcc = CASE WHEN u.cols THEN u.mcc ELSE m.mcc END,"
        " mnc = CASE WHEN u.cols THEN u.mnc ELSE m.mnc END"
        " FROM unnest($1::bigint[], $2::bytea[], $3::smallint[], $4::text[], $5::float8[], $6::bool[], $7::text[],"
        " $8::text[], $9::text[]) AS u(id, state, sg, ch, done, cols, sender, mcc, mnc)"
        " WHERE m.id = u.id",
        *_columns(
            [
                (c.message, c.state, c.status_group, c.channel, c.done_at, c.columns is not None, *(c.columns or _NO))
                for c in changes
            ],
            9,
        ),
    )
    cancel = [c.message for c in changes if c.cancel_expiry]
    if cancel:
        # SKIP LOCKED: a timer another worker has claimed is left to it (its decision will ignore it).
        await conn.execute(
            "DELETE FROM jobs WHERE id = ANY(ARRAY(SELECT id FROM jobs WHERE message = ANY($1::bigint[])"
            " AND kind = 'expire' FOR UPDATE SKIP LOCKED))",
            cancel,
        )
    jobs = [(c.message, kind, step, due, data) for c in changes for kind, step, due, data in c.jobs]
    if jobs:
        await conn.execute(
            "INSERT INTO jobs(message, kind, step, due_at, data)"
            " SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::float8[], $5::bytea[])",
            *_columns(jobs, 5),
        )
    reports = [(c.account_id, c.message, *c.report) for c in changes if c.report is not None]
    if reports:
        await conn.execute(
            "INSERT INTO reports(account_id, message, message_id, bulk_id, channel, body)"
            " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bytea[])",
            *_columns(reports, 6),
        )
    hooks = [(c.account_id, *w, now, c.message) for c in changes for w in c.webhooks]
    if hooks:
        await conn.execute(  # in the order of c.webhooks (ids ascending): the order a message's reports are posted in
            "INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at, message)"
            " SELECT a, r, u, t, b, d, m FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],"
            " $5::bytea[], $6::float8[], $7::bigint[]) WITH ORDINALITY AS x(a, r, u, t, b, d, m, n) ORDER BY n"
            " ON CONFLICT (report_id) DO NOTHING",
            *_columns(hooks, 7),
        )
        await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
    remembered = {(c.account_id, address, channel): until for c in changes for channel, address, until in c.remember}
    if remembered:
        await conn.execute(
            "INSERT INTO capabilities(account_id, address, channel, until)"
            " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[])"
            " ON CONFLICT (account_id, address, channel) DO UPDATE SET until = excluded.until",
            *_columns([(*k, v) for k, v in remembered.items()], 4),
        )
    tally = [row for c in changes for row in c.rollup]
    if tally:
        await conn.execute(upsert_rollups_sql(1), *_rollup_columns(tally))
    submitted = [(c.message, *s, now) for c in changes for s in c.submitted]
    if submitted:
        await conn.execute(
            "INSERT INTO submissions(message, step, channel, provider_id, at)"
            " SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::float8[])",
            *_columns(submitted, 5),
        )
        if any(s[3] for s in submitted):
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", RECEIPTS_LOCK)
            # receipts that came before their provider id was stored (a fast SMSC, a webhook racing the answer)
            matched = []
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM held_receipts)"):
                matched = await conn.fetch(
                    "DELETE FROM held_receipts h USING submissions s WHERE s.channel = h.channel"
                    " AND s.provider_id = h.provider_id RETURNING s.message, s.step, h.data"
                )
            if matched:
                await conn.execute(
                    "INSERT INTO jobs(message, kind, step, due_at, data)"
                    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::float8[], $5::bytea[])",
                    *_columns([receipt_job(r[0], r[1], bytes(r[2]), now) for r in matched], 5),
                )
