"""Retention on PostgreSQL by dropping whole partitions (migration 010).

Row-by-row retention (``DELETE`` of every finished message, its steps, its report and its request, then the
autovacuum behind it) fell behind in a long run: dead rows piled up in ``messages`` and the gateway slowed
down with them (``bench/soak_pg.py``, BENCHMARKS.md). So the
tables that hold a message's rows are partitioned by id in *generations* of 2^32 ids (generation ``g`` holds
``[g * 2^32, (g + 1) * 2^32)``, in the tables ``<table>_g<g>``): ``messages``, ``submissions`` and ``reports``
by the message id, ``requests`` by its own. The engine's purge (:meth:`PostgresStore.purge`) calls
:func:`upkeep`, which

1. keeps the partition of the next id and a spare one after it;
2. *seals* the current generation once its first message is older than a quarter of the retention (or its
   newest is past the retention): the id sequences jump to the next generation, so no new row lands in it;
3. drops a sealed generation once every message in it finished before the retention's horizon (``DROP TABLE``
   of its partitions), and a sealed generation of requests once no message refers to any of them.

A sealed generation that still holds a message under way (a long validity, a ``sendAt`` days ahead) is left to
the row-by-row purge, which removes its finished messages as before (:func:`upkeep` answers up to which id).

Each generation of ``messages`` has its own unique index of the client message ids (a unique index of the
partitioned table would have to include the id), and an accept looks the ids it was sent up in every
generation before it stores them. That is as strict as one index, because a generation begins only between
accepts: an accept holds a share lock on ``messages`` and ``requests`` from before its look-up to its commit,
and the upkeep moves the sequences on under the exclusive lock of both. Two accepts of one message id either
take ids of the same generation (its unique index stops the second, which looks again) or one committed before
the other began. The same lock makes every accept with ids of a sealed generation committed before the upkeep
looks into it. Dropping takes the exclusive lock again, for the time of the ``DROP`` only (milliseconds); both
give up after ``LOCK_TIMEOUT`` and try again at the next purge.
"""

from __future__ import annotations

import logging
import re
from typing import TypeAlias

import asyncpg

log = logging.getLogger("omnirelay.store")

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

SPAN = 1 << 32
"""Ids in a generation."""
MESSAGE_TABLES = ("messages", "submissions", "reports")
"""Partitioned by message id, in the same generations."""
UPKEEP_LOCK = 7304
"""Advisory lock: one process's upkeep at a time."""
LOCK_TIMEOUT = "2s"
FIRST_ID = -(1 << 63)


async def upkeep(pool: asyncpg.Pool, before: float, now: float) -> tuple[int, int]:
    """Keep the partitions ahead, seal the current generation when due, drop the generations that retention no
    longer keeps (finished before ``before``). Returns how many messages were dropped, and the id below which
    the row-by-row purge is to remove finished messages (0: nowhere); does nothing while another process's
    upkeep runs."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", UPKEEP_LOCK):
            return 0, 0
        try:
            return await _upkeep(conn, before, now)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", UPKEEP_LOCK)


async def prepare(conn: Conn) -> bool:
    """Make the partitions of the generation the next ids fall in and of the one after (``migrate`` and every
    upkeep); whether they are all there (False: a table stayed busy past ``LOCK_TIMEOUT``)."""
    generation, request_generation = await _generations(conn)
    return await _ensure(conn, MESSAGE_TABLES, generation + 1) and await _ensure(
        conn, ("requests",), request_generation + 1
    )


async def _upkeep(conn: Conn, before: float, now: float) -> tuple[int, int]:
    await prepare(conn)
    generation, request_generation = await _generations(conn)
    period = min(max((now - before) / 4, 30.0), 86_400.0)
    if (
        await _due(conn, generation, before, now - period)
        and await _ensure(conn, MESSAGE_TABLES, generation + 2)  # the partitions after the next, made ready
        and await _ensure(conn, ("requests",), request_generation + 2)
        and await _seal(conn, (generation + 1) * SPAN, (request_generation + 1) * SPAN)
    ):
        generation, request_generation = generation + 1, request_generation + 1
        log.info("retention: message ids go on in generation %d", generation)
    sealed = [p for p in await _partitions(conn, "messages") if p[2] <= generation * SPAN]
    sealed_requests = [p for p in await _partitions(conn, "requests") if p[2] <= request_generation * SPAN]
    dropped, below, kept = 0, 0, False
    for name, lo, hi in sealed:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {name} WHERE done_at >= $1)", before):
            kept = True  # retention keeps some of it: dropped later, with all it holds
            continue
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {name} WHERE done_at IS NULL)"):
            if not kept:
                below = hi  # a message under way: its finished neighbours go row by row
            continue
        count = await _drop_messages(conn, name, lo, hi)
        if count is None:
            break
        dropped += count
    for name, lo, hi in sealed_requests:
        if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE request_id >= $1 AND request_id < $2)", lo, hi
        ):
            await _drop(conn, ("requests",), [name])
    return dropped, below


async def _generations(conn: Conn) -> tuple[int, int]:
    """The generations the next message id and the next request id fall in."""
    row = await conn.fetchrow(
        "SELECT (SELECT last_value + is_called::int FROM messages_id_seq),"
        " (SELECT last_value + is_called::int FROM requests_id_seq)"
    )
    return row[0] // SPAN, row[1] // SPAN


async def _partitions(conn: Conn, table: str) -> list[tuple[str, int, int]]:
    """The partitions of ``table``: (name, first id, first id after), oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid ="
        " i.inhrelid WHERE i.inhparent = $1::regclass AND c.relkind = 'r'",
        table,
    )
    found = []
    for name, bound in rows:
        lo, hi = re.findall(r"\((MINVALUE|'-?\d+')\)", bound)
        found.append((name, FIRST_ID if lo == "MINVALUE" else int(lo.strip("'")), int(hi.strip("'"))))
    return sorted(found, key=lambda p: p[2])


async def _ensure(conn: Conn, tables: tuple[str, ...], last: int) -> bool:
    """Make the partitions of generations up to ``last`` after the newest there is; whether they all are there
    (False: a table stayed busy, they are made at the next purge)."""
    for table in tables:
        newest = max(p[2] for p in await _partitions(conn, table)) // SPAN
        for generation in range(newest, last + 1):
            try:
                await _create(conn, table, generation)
            except asyncpg.LockNotAvailableError:
                return False
    return True


async def _create(conn: Conn, table: str, generation: int) -> None:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table}_g{generation} PARTITION OF {table}"
            f" FOR VALUES FROM ({generation * SPAN}) TO ({(generation + 1) * SPAN})"
        )
        if table == "messages":
            await conn.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS messages_g{generation}_client_id"
                f" ON messages_g{generation} (account_id, message_id)"
            )


async def _due(conn: Conn, generation: int, before: float, started_before: float) -> bool:
    """Whether the current generation is to be sealed: its first message came before ``started_before``, or its
    newest before ``before`` (nothing has come for the whole retention)."""
    lo, hi = generation * SPAN, (generation + 1) * SPAN
    first = await conn.fetchval(
        "SELECT created_at FROM messages WHERE id >= $1 AND id < $2 ORDER BY id LIMIT 1", lo, hi
    )
    if first is None:
        return False
    if first < started_before:
        return True
    newest = await conn.fetchval(
        "SELECT created_at FROM messages WHERE id >= $1 AND id < $2 ORDER BY id DESC LIMIT 1", lo, hi
    )
    return bool(newest < before)


async def _seal(conn: Conn, messages_from: int, requests_from: int) -> bool:
    """Move the id sequences on to the next generation, between accepts (see the module's docstring)."""
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await conn.execute("LOCK TABLE ONLY messages, ONLY requests IN ACCESS EXCLUSIVE MODE")
            for sequence, first in (("messages_id_seq", messages_from), ("requests_id_seq", requests_from)):
                await conn.execute(
                    f"SELECT setval('{sequence}', $1, false) WHERE (SELECT last_value FROM {sequence}) < $1", first
                )
    except asyncpg.LockNotAvailableError:
        log.info("retention: the tables stayed busy; the next generation begins at the next purge")
        return False
    return True


async def _drop_messages(conn: Conn, name: str, lo: int, hi: int) -> int | None:
    """Drop the generation of messages ``name`` (all finished and past the retention) with its steps, reports
    and leftover jobs. How many messages it held (None: not dropped, the tables stayed busy)."""
    count = await conn.fetchval(f"SELECT count(*) FROM {name}")
    suffix = name.removeprefix("messages")
    if not await _drop(conn, MESSAGE_TABLES, [t + suffix for t in MESSAGE_TABLES], ("jobs", lo, hi)):
        return None
    log.info("retention: dropped %s (%d messages)", name, count)
    return int(count)


async def _drop(
    conn: Conn, parents: tuple[str, ...], partitions: list[str], also: tuple[str, int, int] | None = None
) -> bool:
    """Drop ``partitions`` of ``parents`` under the parents' exclusive lock; ``also``: (table, lo, hi), the rows
    of ``table`` whose message is in [lo, hi) deleted with them. False when the lock was not had in time."""
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await conn.execute(f"LOCK TABLE {', '.join('ONLY ' + p for p in parents)} IN ACCESS EXCLUSIVE MODE")
            for partition in partitions:
                await conn.execute(f"DROP TABLE IF EXISTS {partition}")
            if also is not None:
                table, lo, hi = also
                await conn.execute(f"DELETE FROM {table} WHERE message >= $1 AND message < $2", lo, hi)
    except asyncpg.LockNotAvailableError:
        log.info("retention: the tables stayed busy; %s is dropped at the next purge", partitions[0])
        return False
    return True
