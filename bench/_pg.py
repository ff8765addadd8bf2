"""Throw-away PostgreSQL databases for benchmarks: made fresh on a server, dropped afterwards."""

from __future__ import annotations

import uuid

import asyncpg


async def create(admin: str) -> str:
    """A new empty database on the server ``admin`` points at; returns its URL."""
    name = f"omnirelay_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin.rpartition("/")[0] + "/" + name


async def drop(admin: str, url: str) -> None:
    """Drop a database made by :func:`create`."""
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}"')
    finally:
        await conn.close()
