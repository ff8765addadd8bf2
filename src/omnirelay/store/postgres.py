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
import re
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, TypeAlias, TypeVar

import asyncpg

from omnirelay.domain.catalogue import REJECTED_GROUP
from omnirelay.store import partitions, queries
from omnirelay.store.base import Change, NewMessage, ScenarioRecord, SchemaError, Stored
from omnirelay.store.errors import UNAVAILABLE
from omnirelay.store.flow import All, Call, Each, Exec, Flow, One, Rows, Step, Value, columns, statements
from omnirelay.store.flows import engine, sending
from omnirelay.store.flows.sending import Retry
from omnirelay.store.rows import (
    AcceptItem,
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
        if not await partitions.prepare(conn):
            raise RuntimeError("the tables stayed busy while their next partitions were made: run migrate again")
        return version
    finally:
        await conn.close()


def _newer(found: int, latest: int) -> str:
    return f"the database has schema version {found}, but this omnirelay knows only up to {latest}: upgrade omnirelay"


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

    @property
    def rollup_shard(self) -> int:
        """By process id (of this process, after any fork)."""
        return os.getpid() % ROLLUP_SHARDS

    def message_updates(self, changes: list[Change]) -> list[Rows]:
        """One statement for every change (a round trip each cost more than SQLite's index rewrites it saves)."""
        return [
            Rows(
                self.q.update_messages,
                [
                    (c.message, c.state, c.status_group, c.channel, c.done_at, c.columns is not None)
                    + (c.columns or _NO)
                    for c in changes
                ],
            )
        ]

    async def take_ids(self, conn: Conn, requests: int, messages: int) -> tuple[list[int], list[int]]:
        """Ids for ``requests`` new requests and ``messages`` new messages, in the accept's transaction."""
        request_ids, message_ids = await conn.fetchrow(
            "SELECT array(SELECT nextval('requests_id_seq') FROM generate_series(1, $1)),"
            " array(SELECT nextval('messages_id_seq') FROM generate_series(1, $2))",
            requests,
            messages,
        )
        return list(request_ids), list(message_ids)

    async def insert_accepted(
        self, conn: Conn, items: list[AcceptItem], fresh: list[tuple[int, list[NewMessage]]], tally: list[Any]
    ) -> int:
        """Every row of the batch in one statement of arrays (SQLite inserts per request, in multi-row
        ``VALUES``): the requests, their messages, a start job for each message stored but not refused (those
        are stored finished: a done time and status group 5), the rollups, the workers' wake-up (sent on
        commit). How many messages were stored: fewer when another process took a client message id
        meanwhile (``ON CONFLICT DO NOTHING``)."""
        requests = [i for i, _ in fresh]
        rows = [(i, m) for i, messages in fresh for m in messages]
        request_ids, message_ids = await self.take_ids(conn, len(requests), len(rows))
        rid = dict(zip(requests, request_ids, strict=True))
        stored = await conn.fetchval(
            _ACCEPT,
            request_ids,
            [items[i].account_id for i in requests],
            [items[i].payload for i in requests],
            message_ids,
            [items[i].account_id for i, _ in rows],
            [m.message_id for _, m in rows],
            [rid[i] for i, _ in rows],
            [items[i].bulk_id for i, _ in rows],
            [m.to_json for _, m in rows],
            [m.content_hash for _, m in rows],
            [items[i].now for i, _ in rows],
            [m.state for _, m in rows],
            [m.address for _, m in rows],
            [items[i].start_at for i, _ in rows],
            REJECTED_GROUP,
            [items[i].now if m.rejected else None for i, m in rows],
            [m.sender for _, m in rows],
            [m.mcc for _, m in rows],
            [m.mnc for _, m in rows],
            *(columns(tally) if tally else [[]] * 12),
        )
        return int(stored)


async def run_flow(conn: Conn | asyncpg.Pool, flow: Flow[T]) -> T:
    """Run ``flow`` on ``conn`` (a connection in a transaction, or the pool for a flow that only reads)."""
    try:
        step = flow.send(None)
        while True:
            try:
                value = await _execute(conn, step)
            except Exception as exc:  # the flow's to handle (StopIteration of a statement included)
                step = flow.throw(exc)
            else:
                step = flow.send(value)
    except StopIteration as done:  # only the flow's own end reaches here
        return done.value  # type: ignore[no-any-return]


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
            if await conn.fetchval("SHOW autovacuum") == "off":
                log.warning(
                    "PostgreSQL runs with autovacuum = off: the queues (jobs, reports, webhooks) keep their dead rows"
                    " and every claim and pull slows down as they pile up; turn it on for a gateway that runs long"
                )
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

    async def _read(self, make: Callable[[], Flow[T]]) -> T:
        return await run_flow(self.pool, make())

    async def _write(self, make: Callable[[], Flow[T]]) -> T:
        async with self.pool.acquire() as conn, conn.transaction():
            return await run_flow(conn, make())

    async def _write_statement(self, make: Callable[[], Flow[T]]) -> T:
        return await run_flow(self.pool, make())

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
        found = await self._read(read)
        if self._scenarios_live and generation == self._generation:
            self._scenarios[key] = found
        return found

    # --- sending (group commit) ------------------------------------------------------------------

    async def _accept(self, item: AcceptItem) -> list[Stored]:
        """Queued for the next group transaction: requests that arrive while one is under way wait for the
        next, which stores them all with a handful of array statements."""
        future: asyncio.Future[list[Stored]] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
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
            except Retry as exc:  # another process took a client message id meanwhile: decide again
                error = exc
            except asyncpg.TransactionRollbackError as exc:
                # a deadlock (two batches with the same client message ids, or rollup rows, in another order) or
                # a serialization failure: the database rolled the batch back as a whole, so it runs again
                error = exc
            except Exception as exc:
                error = exc
                break
        if len(items) == 1 or isinstance(error, (*UNAVAILABLE, Retry)):
            return [error] * len(items)
        half = len(items) // 2
        return await self._settle_batch(items[:half]) + await self._settle_batch(items[half:])

    async def _accept_batch(self, items: list[AcceptItem]) -> list[list[Stored]]:
        async with self.pool.acquire() as conn, conn.transaction():
            # held to the commit, from before the client message ids are looked up: retention starts a new
            # generation only between batches (store/partitions.py)
            await conn.execute("LOCK TABLE ONLY messages, ONLY requests IN ACCESS SHARE MODE")
            return await run_flow(conn, sending.accept(self.dialect, items))

    # --- retention ---------------------------------------------------------------------------------

    async def purge(self, before: float, limit: int) -> int:
        """Drop the generations of messages that retention no longer keeps (:mod:`~omnirelay.store.partitions`);
        then up to ``limit`` finished messages, row by row, of the generations kept for a message under way. How
        many messages were removed."""
        dropped, below = await partitions.upkeep(self.pool, before, time.time())
        return dropped + await self._write(lambda: engine.purge(self.dialect, before, limit, time.time(), below))



def upsert_rollups_sql(first: int) -> str:
    """The statement ``upsert_rollups`` with its 12 arrays as parameters ``$first`` on (to be part of a bigger
    statement)."""
    return re.sub(r"\$(\d+)", lambda p: f"${int(p[1]) + first - 1}", PostgresDialect.q.upsert_rollups)



#: The accept's one statement (see PostgresDialect.insert_accepted): it answers how many messages were stored.
_ACCEPT = (
    "WITH r AS (INSERT INTO requests(id, account_id, payload)"
    "  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])),"
    " m AS (INSERT INTO messages(id, account_id, message_id, request_id, bulk_id, to_json,"
    "  content_hash, created_at, state, address, status_group, done_at, sender, mcc, mnc)"
    "  SELECT u.id, u.a, u.mid, u.r, u.b, u.t, u.h, u.c, u.s, u.ad,"
    "  CASE WHEN u.done IS NULL THEN 1 ELSE $15::smallint END, u.done, u.se, u.mcc, u.mnc"
    "  FROM unnest($4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::text[], $9::bytea[],"
    "  $10::bytea[], $11::float8[], $12::bytea[], $13::text[], $16::float8[], $17::text[], $18::text[],"
    "  $19::text[]) AS u(id, a, mid, r, b, t, h, c, s, ad, done, se, mcc, mnc)"
    "  ON CONFLICT DO NOTHING RETURNING id, done_at),"  # the generation's unique index of client message ids
    " j AS (INSERT INTO jobs(message, kind, due_at) SELECT u.m, 'start', u.d"
    "  FROM unnest($4::bigint[], $14::float8[]) AS u(m, d) JOIN m ON m.id = u.m"
    "  WHERE m.done_at IS NULL),"
    f" ru AS ({upsert_rollups_sql(20)})"
    f" SELECT (SELECT count(*) FROM m) FROM pg_notify('{JOBS_CHANNEL}', '')"
)


_NO = (None, None, None)

