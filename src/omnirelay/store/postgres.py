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
    Stored,
)
from omnirelay.store.errors import UNAVAILABLE
from omnirelay.store.flow import All, Call, Each, Exec, Flow, One, Rows, Step, Value, columns, statements
from omnirelay.store.flows import sending
from omnirelay.store.flows.engine import rollup_rows
from omnirelay.store.flows.sending import Retry
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
        request_ids, message_ids = await conn.fetchrow(
            "SELECT array(SELECT nextval('requests_id_seq') FROM generate_series(1, $1)),"
            " array(SELECT nextval('messages_id_seq') FROM generate_series(1, $2))",
            len(requests),
            len(rows),
        )
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

    async def _write(self, flow: Flow[T] | Callable[[], Flow[T]]) -> T:
        async with self.pool.acquire() as conn, conn.transaction():
            return await run_flow(conn, flow() if callable(flow) else flow)

    def _scenarios_written(self) -> None:
        self._scenarios_changed()

    def _scenarios_changed(self) -> None:
        self._generation += 1
        self._scenarios.clear()

    def _scenarios_listening(self, live: bool) -> None:
        self._scenarios_changed()  # what was read while not listening may be stale
        self._scenarios_live = live

    async def _cached_scenario(self, account_id: int, key: str | None, sql: str, *args: Any) -> ScenarioRecord | None:
        if self._scenario_watch is None:
            watch = self._listen(
                {SCENARIOS_CHANNEL: self._scenarios_changed},
                up=lambda: self._scenarios_listening(True),
                down=lambda: self._scenarios_listening(False),
            )
            self._scenario_watch = asyncio.get_running_loop().create_task(watch, name="pg-scenarios")
        cache_key = (account_id, key)
        if self._scenarios_live and cache_key in self._scenarios:
            return self._scenarios[cache_key]
        generation = self._generation
        row = await self.pool.fetchrow(sql, *args)
        found = scenario_from_row(row) if row else None
        if self._scenarios_live and generation == self._generation:
            self._scenarios[cache_key] = found
        return found

    # --- accounts and keys ---------------------------------------------------------------------

    async def set_password_hash(self, account_id: int, password_hash: str | None) -> None:
        await self.pool.execute("UPDATE accounts SET password_hash = $1 WHERE id = $2", password_hash, account_id)

    async def accounts(self) -> list[Account]:
        return [account_from_row(r) for r in await self.pool.fetch(f"SELECT {ACCOUNT_COLS} FROM accounts ORDER BY id")]

    async def account_by_username(self, username: str) -> Account | None:
        row = await self.pool.fetchrow(f"SELECT {ACCOUNT_COLS} FROM accounts WHERE username = $1", username)
        return account_from_row(row) if row else None

    async def account_by_key_hash(self, key_hash: str) -> Account | None:
        cols = ", ".join("a." + c.strip() for c in ACCOUNT_COLS.split(","))
        row = await self.pool.fetchrow(
            f"SELECT {cols} FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = $1", key_hash
        )
        return account_from_row(row) if row else None

    async def add_key(self, account_id: int, key_id: str, key_hash: str, source: str) -> None:
        await self.pool.execute(
            "INSERT INTO api_keys(id, account_id, key_hash, source, created_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT DO NOTHING",
            key_id,
            account_id,
            key_hash,
            source,
            time.time(),
        )

    async def revoke_key(self, key_id: str) -> bool:
        return str(await self.pool.execute("DELETE FROM api_keys WHERE id = $1", key_id)) != "DELETE 0"

    async def keys(self) -> list[ApiKey]:
        rows = await self.pool.fetch(
            "SELECT k.id, k.account_id, a.username, k.source, k.created_at FROM api_keys k"
            " JOIN accounts a ON a.id = k.account_id ORDER BY k.created_at"
        )
        return [ApiKey(*r) for r in rows]

    # --- console sessions ----------------------------------------------------------------------

    async def add_console_session(
        self, token_hash: str, account_id: int, password_hash: str, expires_at: float, now: float
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM console_sessions WHERE expires_at <= $1", now)
            await conn.execute(
                "INSERT INTO console_sessions(token_hash, account_id, password_hash, expires_at)"
                " VALUES ($1, $2, $3, $4)",
                token_hash,
                account_id,
                password_hash,
                expires_at,
            )

    async def console_session(self, token_hash: str, now: float) -> Account | None:
        cols = ", ".join("a." + c.strip() for c in ACCOUNT_COLS.split(","))
        row = await self.pool.fetchrow(
            f"SELECT {cols} FROM console_sessions s JOIN accounts a ON a.id = s.account_id"
            " WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.password_hash = s.password_hash",
            token_hash,
            now,
        )
        return account_from_row(row) if row else None

    async def end_console_session(self, token_hash: str) -> None:
        await self.pool.execute("DELETE FROM console_sessions WHERE token_hash = $1", token_hash)

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
        async with self.pool.acquire() as conn, conn.transaction():
            # the account's row lock makes two processes creating a session for it at once take turns
            await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
            await conn.execute("DELETE FROM auth_tokens WHERE expires_at <= $1", now)
            if only_one and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM auth_tokens WHERE account_id = $1 AND kind = $2)", account_id, kind
            ):
                return False
            await conn.execute(
                "INSERT INTO auth_tokens(token_hash, account_id, kind, created_at, expires_at, idle_seconds)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                token_hash,
                account_id,
                kind,
                now,
                expires_at,
                idle_seconds,
            )
            return True

    async def auth_token(self, token_hash: str, now: float) -> AuthToken | None:
        cols = ", ".join("a." + c.strip() for c in ACCOUNT_COLS.split(","))
        row = await self.pool.fetchrow(
            f"SELECT t.kind, t.expires_at, t.idle_seconds, {cols} FROM auth_tokens t"
            " JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = $1 AND t.expires_at > $2",
            token_hash,
            now,
        )
        return AuthToken(account_from_row(tuple(row)[3:]), row[0], row[1], row[2]) if row else None

    async def extend_auth_token(self, token_hash: str, expires_at: float, now: float) -> None:
        await self.pool.execute(
            "UPDATE auth_tokens SET expires_at = $2 WHERE token_hash = $1 AND expires_at > $3 AND expires_at < $2",
            token_hash,
            expires_at,
            now,
        )

    async def remove_auth_tokens(self, account_id: int, kind: str, token_hash: str | None = None) -> int:
        if token_hash is None:
            done = await self.pool.execute(
                "DELETE FROM auth_tokens WHERE account_id = $1 AND kind = $2", account_id, kind
            )
        else:
            done = await self.pool.execute(
                "DELETE FROM auth_tokens WHERE account_id = $1 AND kind = $2 AND token_hash = $3",
                account_id,
                kind,
                token_hash,
            )
        return int(done.rsplit(" ", 1)[-1])

    # --- scenarios -----------------------------------------------------------------------------

    async def create_scenario(self, account_id: int, scenario: ScenarioRecord) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if scenario.default:
                await conn.execute(
                    "UPDATE scenarios SET is_default = false WHERE account_id = $1 AND is_default", account_id
                )
            await conn.execute(
                "INSERT INTO scenarios(key, account_id, name, flow, is_default, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                scenario.key,
                account_id,
                scenario.name,
                msgspec.json.encode(scenario.flow),
                scenario.default,
                time.time(),
            )
            await conn.execute(f"NOTIFY {SCENARIOS_CHANNEL}")  # sent on commit
        self._scenarios_changed()  # at once in this process

    async def update_scenario(self, account_id: int, scenario: ScenarioRecord) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            if scenario.default:
                await conn.execute(
                    "UPDATE scenarios SET is_default = false WHERE account_id = $1 AND key <> $2 AND is_default",
                    account_id,
                    scenario.key,
                )
            status = await conn.execute(
                "UPDATE scenarios SET name = $1, flow = $2, is_default = $3 WHERE account_id = $4 AND key = $5",
                scenario.name,
                msgspec.json.encode(scenario.flow),
                scenario.default,
                account_id,
                scenario.key,
            )
            await conn.execute(f"NOTIFY {SCENARIOS_CHANNEL}")
        self._scenarios_changed()
        return str(status) != "UPDATE 0"

    async def delete_scenario(self, account_id: int, key: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute("DELETE FROM scenarios WHERE account_id = $1 AND key = $2", account_id, key)
            await conn.execute(f"NOTIFY {SCENARIOS_CHANNEL}")
        self._scenarios_changed()
        return str(status) != "DELETE 0"

    async def scenario(self, account_id: int, key: str) -> ScenarioRecord | None:
        sql = f"SELECT {SCENARIO_COLS} FROM scenarios WHERE account_id = $1 AND key = $2"
        return await self._cached_scenario(account_id, key, sql, account_id, key)

    async def default_scenario(self, account_id: int) -> ScenarioRecord | None:
        sql = f"SELECT {SCENARIO_COLS} FROM scenarios WHERE account_id = $1 AND is_default"
        return await self._cached_scenario(account_id, None, sql, account_id)

    async def scenarios(self, account_id: int, is_default: bool | None, limit: int, page: int) -> list[ScenarioRecord]:
        rows = await self.pool.fetch(
            f"SELECT {SCENARIO_COLS} FROM scenarios WHERE account_id = $1 AND ($2::boolean IS NULL OR is_default = $2)"
            " ORDER BY seq LIMIT $3 OFFSET $4",
            account_id,
            is_default,
            limit,
            page * limit,
        )
        return [scenario_from_row(r) for r in rows]

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
            except Exception as exc:
                error = exc
                break
        if len(items) == 1 or isinstance(error, (*UNAVAILABLE, Retry)):
            return [error] * len(items)
        half = len(items) // 2
        return await self._settle_batch(items[:half]) + await self._settle_batch(items[half:])

    async def _accept_batch(self, items: list[AcceptItem]) -> list[list[Stored]]:
        return await self._write(lambda: sending.accept(self.dialect, items))

    # --- engine --------------------------------------------------------------------------------

    async def queue_stats(self, now: float) -> tuple[int, float | None]:
        """How many jobs are due, and when the oldest of them fell due."""
        row = await self.pool.fetchrow("SELECT COUNT(*), MIN(due_at) FROM jobs WHERE due_at <= $1", now)
        return int(row[0]), row[1]

    async def check_writable(self, now: float) -> None:
        """Commit one small write (fails on a standby, a read-only or a full database)."""
        await self.pool.execute(
            "INSERT INTO readiness(id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at", now
        )

    async def next_due(self) -> float | None:
        """When the earliest job is due, or None."""
        value = await self.pool.fetchval(NEXT_DUE)
        return float(value) if value is not None else None

    # --- reports, logs, webhooks ----------------------------------------------------------------

    async def take_reports(
        self, account_id: int, bulk_id: str | None, message_id: str | None, channel: str | None, limit: int
    ) -> list[bytes]:
        """The oldest reports not yet taken, deleted as they are taken; concurrent pollers skip each other's rows."""
        # Only the filters given, so that the index on (account_id, id) serves the common case.
        given = [(c, v) for c, v in (("bulk_id", bulk_id), ("message_id", message_id), ("channel", channel)) if v]
        filters = "".join(f" AND {column} = ${i}" for i, (column, _) in enumerate(given, start=3))
        rows = await self.pool.fetch(
            f"DELETE FROM reports WHERE account_id = $1 AND id = ANY(ARRAY(SELECT id FROM reports WHERE account_id = $1"
            f"{filters} ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING id, body",
            account_id,
            limit,
            *(v for _, v in given),
        )
        return [bytes(r[1]) for r in sorted(rows, key=lambda r: r[0])]

    async def logs(self, account_id: int, query: LogQuery) -> list[MessageView]:
        """Messages matching the filters, newest first."""
        sql, args = logs_statement(account_id, query)
        return [_view(r) for r in await self.pool.fetch(sql, *args)]

    async def unindexed_messages(self, limit: int) -> list[tuple[int, bytes, bytes, bytes]]:
        """Messages stored before the logs' filter columns existed: (id, to_json, state, payload)."""
        rows = await self.pool.fetch(
            "SELECT m.id, m.to_json, m.state, r.payload FROM messages m JOIN requests r ON r.id = m.request_id"
            " WHERE m.mcc = '?' ORDER BY m.id LIMIT $1",
            limit,
        )
        return [(r[0], bytes(r[1]), bytes(r[2]), bytes(r[3])) for r in rows]

    async def set_log_columns(self, rows: list[tuple[int, str | None, str | None, str | None]]) -> None:
        """Fill the filter columns of messages stored before they existed (unless the engine did meanwhile)."""
        await self.pool.execute(
            "UPDATE messages AS m SET sender = u.sender, mcc = u.mcc, mnc = u.mnc"
            " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(id, sender, mcc, mnc)"
            " WHERE m.id = u.id AND m.mcc = '?'",
            *_columns(rows, 4),
        )

    async def message(self, account_id: int, message_id: str) -> MessageView | None:
        """One message of the account, or None."""
        row = await self.pool.fetchrow(
            f"SELECT {VIEW_COLS} FROM messages m JOIN requests r ON r.id = m.request_id"
            " WHERE m.account_id = $1 AND m.message_id = $2",
            account_id,
            message_id,
        )
        return _view(row) if row else None

    async def claim_deliveries(self, now: float, limit: int, lease_s: float) -> list[Delivery]:
        """Due webhook deliveries, leased so that no other notifier takes them meanwhile; one waits while an
        earlier delivery of the same message is in the outbox (unsent, in flight or to be retried, not given
        up), so a message's reports arrive in order."""
        rows = await self.pool.fetch(
            "UPDATE outbox SET lease_until = $2 WHERE id = ANY(ARRAY(SELECT id FROM outbox o WHERE due_at <= $1"
            " AND lease_until <= $1 AND (message IS NULL OR NOT EXISTS (SELECT 1 FROM outbox e"
            " WHERE e.message = o.message AND e.id < o.id AND e.due_at < 'Infinity'::float8))"
            " ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED))"
            " RETURNING id, account_id, report_id, url, content_type, body, attempts",
            now,
            now + lease_s,
            limit,
        )
        return [Delivery(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in rows]

    async def settle_deliveries(self, done: list[int], retries: list[tuple[int, float | None, str]]) -> None:
        """Drop the deliveries the receivers acknowledged; reschedule the others (``None``: tries used up, the row
        is kept and marked, never lost silently)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if done:
                await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", done)
            if retries:
                await conn.execute(
                    "UPDATE outbox AS o SET attempts = o.attempts + 1, due_at = u.due, lease_until = 0,"
                    " last_error = u.err FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS u(id, due, err)"
                    " WHERE o.id = u.id",
                    *_columns([(d, due if due is not None else float("inf"), err) for d, due, err in retries], 3),
                )

    async def push_webhooks(self, items: list[tuple[int, str, str, str, bytes]], now: float) -> None:
        """Queue webhook deliveries that do not come from the engine (inbound messages)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at)"
                " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::float8[])"
                " ON CONFLICT (report_id) DO NOTHING",
                *_columns([(*item, now) for item in items], 6),
            )
            await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")

    # --- connectors ----------------------------------------------------------------------------

    async def provider_ids_like(self, channel: str, prefix: str, since: float, until: float, limit: int) -> list[str]:
        """Provider ids of ``channel`` starting with ``prefix``, stored from ``since`` to ``until``, newest first."""
        rows = await self.pool.fetch(
            "SELECT provider_id FROM submissions WHERE channel = $1 AND left(provider_id, $2) = $3"
            " AND at >= $4 AND at <= $5 ORDER BY at DESC LIMIT $6",
            channel, len(prefix), prefix, since, until, limit,
        )
        return [str(r[0]) for r in rows]

    async def set_capabilities(self, rows: list[tuple[int, str, str, float]]) -> None:
        """Upsert capability memory rows (account_id, channel, address, until)."""
        latest = {(a, ad, ch): until for a, ch, ad, until in rows}  # one row per key in one statement
        await self.pool.execute(
            "INSERT INTO capabilities(account_id, address, channel, until)"
            " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[])"
            " ON CONFLICT (account_id, address, channel) DO UPDATE SET until = excluded.until",
            *_columns([(*k, v) for k, v in latest.items()], 4),
        )

    async def capabilities_of(self, account_id: int, channel: str, addresses: list[str], now: float) -> set[str]:
        """Which of ``addresses`` the capability memory holds for ``channel`` at ``now``."""
        rows = await self.pool.fetch(
            "SELECT address FROM capabilities WHERE account_id = $1 AND channel = $2 AND until > $3"
            " AND address = ANY($4::text[])",
            account_id, channel, now, addresses,
        )
        return {str(r[0]) for r in rows}

    async def take_tokens(self, key: str, want: int, rate: float, burst: float, now: float) -> int:
        """Take up to ``want`` tokens from the bucket ``key``, shared by every process on this database."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO rate_buckets(key, tokens, updated) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                key,
                burst,
                now,
            )
            row = await conn.fetchrow("SELECT tokens, updated FROM rate_buckets WHERE key = $1 FOR UPDATE", key)
            granted, left = take_tokens((row[0], row[1]), want, rate, burst, now)
            await conn.execute("UPDATE rate_buckets SET tokens = $2, updated = $3 WHERE key = $1", key, left, now)
            return granted

    # --- inbound SMS ---------------------------------------------------------------------------

    async def record_inbound(
        self, parts: list[InboundPart], now: float, window_s: float, build: Build
    ) -> InboundCounts:
        """Store received parts of inbound SMS, dropping those seen within ``window_s`` (see the protocol).

        Two workers may get parts of one message (or the same resend) at once: the key's row lock makes the
        second see the first's key, and a lock per message group makes one of them find the message complete.
        """
        unique = fresh_parts(parts)
        async with self.pool.acquire() as conn, conn.transaction():
            groups = sorted({p.group for p in unique if p.total > 1})
            if groups:
                await _lock_groups(conn, groups)
            # keys in one order in every transaction: two batches holding the same resends never wait in a circle
            taken = await conn.fetch(
                "INSERT INTO inbound_seen(key, at) SELECT k, $2 FROM unnest($1::text[]) AS k ORDER BY k"
                " ON CONFLICT (key) DO UPDATE SET at = excluded.at WHERE inbound_seen.at < $3 RETURNING key",
                sorted(p.key for p in unique),
                now,
                now - window_s,
            )
            keys = {r[0] for r in taken}
            fresh = [p for p in unique if p.key in keys]
            done = [single(p, now) for p in fresh if p.total <= 1]
            long = [part_row(p, now) for p in fresh if p.total > 1]
            if long:
                await conn.execute(
                    f"INSERT INTO inbound_parts({PART_COLS}) SELECT * FROM unnest($1::text[], $2::int[], $3::int[],"
                    " $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::float8[])"
                    " ON CONFLICT (grp, seq) DO NOTHING",
                    *_columns(long, 9),
                )
                totals = {p.group: p.total for p in fresh if p.total > 1}
                rows = await conn.fetch(
                    f"SELECT {PART_COLS} FROM inbound_parts WHERE grp = ANY($1::text[])", list(totals)
                )
                by_group: dict[str, list[Any]] = {}
                for r in rows:
                    by_group.setdefault(r[0], []).append(r)
                complete = [g for g, found in by_group.items() if len(found) >= totals[g]]
                if complete:
                    await conn.execute("DELETE FROM inbound_parts WHERE grp = ANY($1::text[])", complete)
                    done += [message_of(by_group[g]) for g in complete]
            await _store_inbound(conn, done, now, build)
        return InboundCounts(len(fresh), len(parts) - len(fresh), len(done))

    async def sweep_inbound(self, now: float, part_timeout_s: float, window_s: float, build: Build) -> int:
        """Deliver long messages whose parts stopped coming; forget old keys and unpulled messages."""
        async with self.pool.acquire() as conn, conn.transaction():
            groups = [
                r[0]
                for r in await conn.fetch(
                    "SELECT grp FROM inbound_parts GROUP BY grp HAVING MIN(at) < $1 ORDER BY grp", now - part_timeout_s
                )
            ]
            done = []
            if groups:
                await _lock_groups(conn, groups)
                rows = await conn.fetch(
                    f"DELETE FROM inbound_parts WHERE grp = ANY($1::text[]) RETURNING {PART_COLS}", groups
                )
                by_group: dict[str, list[Any]] = {}
                for r in rows:
                    by_group.setdefault(r[0], []).append(r)
                done = [message_of(found) for found in by_group.values()]
                await _store_inbound(conn, done, now, build)
            await conn.execute("DELETE FROM inbound_seen WHERE at < $1", now - window_s)
            await conn.execute("DELETE FROM inbound_messages WHERE received_at < $1", now - RETENTION_S)
        return len(done)

    async def take_inbound(self, account_id: int, limit: int, since: float) -> tuple[list[bytes], int]:
        """The account's oldest inbound messages, removed as taken; concurrent pollers skip each other's rows."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM inbound_messages WHERE account_id = $1 AND id = ANY(ARRAY(SELECT id FROM inbound_messages"
                " WHERE account_id = $1 AND received_at >= $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED))"
                " RETURNING id, body",
                account_id,
                since,
                limit,
            )
            left = await conn.fetchval(
                "SELECT count(*) FROM inbound_messages WHERE account_id = $1 AND received_at >= $2", account_id, since
            )
        return [bytes(r[1]) for r in sorted(rows, key=lambda r: r[0])], int(left)

    # --- console search ------------------------------------------------------------------------

    async def search_messages(
        self, account_id: int, search: MessageSearch, after: Cursor | None = None, before: Cursor | None = None
    ) -> list[Found]:
        """A page of matching messages, newest first, next to a cursor (keyset paging)."""
        where, args = search_filters(account_id, search)
        condition, bounds, oldest_first = keyset(after, before)
        if condition:
            where.append(_numbered(condition, len(args) + 1))
            args.extend(bounds)
        args.append(search.filters.limit)
        order = "ASC" if oldest_first else "DESC"
        rows = await self.pool.fetch(
            f"SELECT m.id, {VIEW_COLS} FROM messages m JOIN requests r ON r.id = m.request_id"
            f" WHERE {' AND '.join(where)} ORDER BY m.created_at {order}, m.id {order} LIMIT ${len(args)}",
            *args,
        )
        found = [Found(Cursor(r[4], r[0]), _view(tuple(r)[1:])) for r in rows]
        return found[::-1] if oldest_first else found

    async def count_messages(self, account_id: int, search: MessageSearch, cap: int) -> int:
        """How many messages match, up to ``cap`` (``cap + 1``: more)."""
        where, args = search_filters(account_id, search)
        args.append(cap + 1)
        found = await self.pool.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM messages m WHERE {' AND '.join(where)} LIMIT ${len(args)}) AS c",
            *args,
        )
        return int(found)

    # --- the console overview ------------------------------------------------------------------

    async def overview(self, account_id: int, span: int, since: float, until: float) -> Overview:
        """The account's rollup rows of width ``span`` for messages accepted in ``[since, until)``."""
        args = (account_id, span, int(since), int(until))
        async with self.pool.acquire() as conn:
            totals = await conn.fetch(OVERVIEW_TOTALS.format(p="$"), *args)
            series = await conn.fetch(OVERVIEW_SERIES.format(p="$"), *args)
        return Overview(
            [(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), float(r[7])) for r in totals],
            [(r[0], r[1], r[2], int(r[3])) for r in series],
        )

    async def backfill_rollups(self, limit: int, tally: Callable[[list[Backlogged]], list[rollups.Row]]) -> int:
        """Add up to ``limit`` backlogged messages to the rollups, dropping them from the backlog (workers starting
        together take different ones)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "WITH b AS (DELETE FROM rollup_backlog WHERE message IN (SELECT message FROM rollup_backlog"
                "  ORDER BY message LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING message, done)"
                " SELECT b.message, m.account_id, m.created_at, m.state, m.status_group, b.done, m.to_json, r.payload"
                " FROM b LEFT JOIN messages m ON m.id = b.message LEFT JOIN requests r ON r.id = m.request_id",
                limit,
            )
            found = [
                Backlogged(r[1], r[2], bytes(r[3]), r[4], r[5], bytes(r[6]), bytes(r[7]))
                for r in rows
                if r[1] is not None
            ]
            added = tally(found)
            if added:
                await conn.execute(upsert_rollups_sql(1), *_rollup_columns(added))
            return len(rows)

    async def rollup_backlog(self) -> int:
        """How many messages are still to be added to the rollups."""
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM rollup_backlog"))

    async def put_connector_health(self, process: str, rows: list[tuple[str, str, bytes]], now: float) -> None:
        """Replace an engine process's snapshot of its connectors; drop snapshots older than a day."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM connector_health WHERE process = $1 OR at < $2", process, now - 86400)
            await conn.execute(
                "INSERT INTO connector_health(process, connector, channel, at, data)"
                " SELECT $1, c, ch, $2, d FROM unnest($3::text[], $4::text[], $5::text[]) AS u(c, ch, d)",
                process,
                now,
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2].decode() for r in rows],
            )

    async def connector_health(self) -> list[tuple[str, str, str, float, bytes]]:
        """Every stored snapshot of connectors: (process, connector, channel, at, JSON)."""
        rows = await self.pool.fetch(
            "SELECT process, connector, channel, at, data FROM connector_health ORDER BY connector, process"
        )
        return [(r[0], r[1], r[2], r[3], r[4].encode()) for r in rows]



async def _lock_groups(conn: Conn, groups: list[str]) -> None:
    """Take the transaction's locks of inbound message groups (sorted: two transactions never wait on each other
    in a circle)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(g, 7303)) FROM unnest($1::text[]) AS g ORDER BY g", groups
    )


async def _store_inbound(conn: Conn, messages: list[InboundMessage], now: float, build: Build) -> None:
    """Keep complete inbound messages for the pull and queue their webhooks (waking the notifiers)."""
    kept, pushed = message_rows(messages, now, build)
    if kept:
        await conn.execute(
            "INSERT INTO inbound_messages(account_id, received_at, body)"
            " SELECT * FROM unnest($1::bigint[], $2::float8[], $3::bytea[])",
            *_columns(kept, 3),
        )
    if pushed:
        await conn.execute(
            "INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at)"
            " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::float8[])"
            " ON CONFLICT (report_id) DO NOTHING",
            *_columns(pushed, 6),
        )
        await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")


def upsert_rollups_sql(first: int) -> str:
    """The statement ``upsert_rollups`` with its 12 arrays as parameters ``$first`` on (to be part of a bigger
    statement)."""
    return re.sub(r"\$(\d+)", lambda p: f"${int(p[1]) + first - 1}", PostgresDialect.q.upsert_rollups)


def _rollup_columns(rows: list[rollups.Row]) -> list[list[Any]]:
    """Rollup rows as the 12 arrays of :func:`upsert_rollups_sql`."""
    return _columns(rollup_rows(PostgresStore.dialect, rows), 12)


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
    "  ON CONFLICT (account_id, message_id) DO NOTHING RETURNING id, done_at),"
    " j AS (INSERT INTO jobs(message, kind, due_at) SELECT u.m, 'start', u.d"
    "  FROM unnest($4::bigint[], $14::float8[]) AS u(m, d) JOIN m ON m.id = u.m"
    "  WHERE m.done_at IS NULL),"
    f" ru AS ({upsert_rollups_sql(20)})"
    f" SELECT (SELECT count(*) FROM m) FROM pg_notify('{JOBS_CHANNEL}', '')"
)


def logs_statement(account_id: int, query: LogQuery) -> tuple[str, list[Any]]:
    """The statement of :meth:`PostgresStore.logs` and its arguments. It names only the filters given: a generic
    plan of "($n IS NULL OR column = $n)" could not choose the index of the filter given."""
    where, args = log_filters(account_id, query)
    args.append(query.limit)
    sql = (
        f"SELECT {VIEW_COLS} FROM messages m JOIN requests r ON r.id = m.request_id WHERE {' AND '.join(where)}"
        f" ORDER BY m.created_at DESC, m.id DESC LIMIT ${len(args)}"
    )
    return sql, args


def log_filters(account_id: int, query: LogQuery) -> tuple[list[str], list[Any]]:
    """The conditions of the logs' filters (on ``messages m``, arguments from ``$1``) and their arguments."""
    args: list[Any] = [account_id, query.since]
    where = ["m.account_id = $1", "m.created_at >= $2"]

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.format(f"${len(args)}"))

    if query.until is not None:
        add("m.created_at <= {}", query.until)
    if query.bulk_ids:
        add("m.bulk_id = ANY({}::text[])", list(query.bulk_ids))
    if query.message_ids:
        add("m.message_id = ANY({}::text[])", list(query.message_ids))
    if query.to is not None:
        add("position({} in convert_from(m.to_json, 'UTF8')) > 0", msgspec.json.encode(query.to).decode())
    for column, value in (
        ("status_group", query.status_group),
        ("channel", query.channel),
        ("sender", query.sender),
        ("mcc", query.mcc),
        ("mnc", query.mnc),
    ):
        if value is not None:
            add(f"m.{column} = {{}}", value)
    return where, args


def search_filters(account_id: int, search: MessageSearch) -> tuple[list[str], list[Any]]:
    """The conditions of a console search: the logs' filters and the error name."""
    where, args = log_filters(account_id, search.filters)
    if search.error is not None:
        args.append(error_needle(search.error))
        where.append(f"position(${len(args)}::bytea in m.state) > 0")
    return where, args


def _numbered(condition: str, first: int) -> str:
    """``condition`` with its ``?`` placeholders numbered from ``$first``."""
    parts = condition.split("?")
    return "".join(p + (f"${first + i}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


_NO = (None, None, None)


def _view(row: Sequence[Any]) -> MessageView:
    return MessageView(row[0], row[1], bytes(row[2]), row[3], bytes(row[4]), bytes(row[5]))


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as column lists, for ``unnest``."""
    return [[r[i] for r in rows] for i in range(width)]
