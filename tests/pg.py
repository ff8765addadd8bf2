"""Fresh PostgreSQL databases for tests, on this machine's server (``OMNIRELAY_TEST_PG``, default
``postgresql://postgres@127.0.0.1:5432/postgres``). Each database gets a unique name and the current schema."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg

from omnirelay.store.postgres import migrate

T = TypeVar("T")

ADMIN_URL = os.environ.get("OMNIRELAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def create_database(prefix: str = "omnirelay_test", schema: bool = True) -> str:
    """A new database with the schema migrated in (none unless ``schema``); returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = _url(name)
    if schema:
        await migrate(url)
    return url


async def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database` (connections to it are ended first)."""
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running event loop (in a thread)."""
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


def create_database_sync(prefix: str = "omnirelay_test") -> str:
    """:func:`create_database` for synchronous code."""
    return run_sync(create_database(prefix))


def drop_database_sync(url: str) -> None:
    """:func:`drop_database` for synchronous code."""
    run_sync(drop_database(url))


def fetch_sync(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of one query (``?`` placeholders, as in SQLite) on a PostgreSQL database."""
    parts = sql.split("?")
    numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(numbered, *args)]
        finally:
            await conn.close()

    return run_sync(fetch())
