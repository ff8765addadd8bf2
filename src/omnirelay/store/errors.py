"""Errors that mean "the database cannot serve now": the API answers 503 and the caller may retry.

Classified by what a driver can raise while its server goes away, restarts, fills up or turns read-only, by
family rather than by the cases once seen: asyncpg maps every SQLSTATE to a class under its class's base
(08 connection, 57 operator intervention, 53 insufficient resources, 58 system error, 40 rollback), and its
client side raises :class:`asyncpg.InterfaceError` or :class:`asyncpg.InternalClientError` (a protocol state
it cannot leave, "cannot switch to state 15") when the socket breaks under it.
"""

from __future__ import annotations

import sqlite3

import asyncpg

#: Exceptions a store raises while its database is down, restarting, unreachable, full or read-only.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, timed out (TimeoutError is an OSError), and the file system's own errors
    sqlite3.OperationalError,  # locked, disk full, I/O error, read-only file, cannot open
    asyncpg.PostgresConnectionError,  # 08xxx: the connection failed or does not exist
    asyncpg.OperatorInterventionError,  # 57xxx: admin or crash shutdown, cannot connect now, cancelled
    asyncpg.InsufficientResourcesError,  # 53xxx: disk full, out of memory, too many connections
    asyncpg.PostgresSystemError,  # 58xxx: I/O errors of the server
    asyncpg.TransactionRollbackError,  # 40xxx: serialization failure, deadlock: the same request may pass now
    asyncpg.ReadOnlySQLTransactionError,  # 25006: a standby, e.g. during a failover
    asyncpg.FatalPostgresError,  # a FATAL error of unknown code: the server ended the session
    asyncpg.InterfaceError,  # the client side of a broken connection: closed, pool closing
    asyncpg.InternalClientError,  # asyncpg's protocol state after its socket went away
)
