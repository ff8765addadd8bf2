"""Errors that mean "the database cannot be reached now": the API answers 503 and the caller may retry."""

from __future__ import annotations

import sqlite3

import asyncpg

#: Exceptions a store raises while its database is down, restarting or unreachable.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    sqlite3.OperationalError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.ConnectionDoesNotExistError,
)
