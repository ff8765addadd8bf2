"""Errors that mean "the database cannot serve now": the API answers 503 and the caller may retry.

Classified by what a driver can raise while its server goes away, restarts, fills up or turns read-only, by
family rather than by the cases once seen: asyncpg maps every SQLSTATE to a class under its class's base
(08 connection, 57 operator intervention, 53 insufficient resources, 58 system error, 40 rollback), and its
client side raises :class:`asyncpg.InterfaceError` or :class:`asyncpg.InternalClientError` (a protocol state
it cannot leave, "cannot switch to state 15") when the socket breaks under it.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import asyncpg

log = logging.getLogger("omnirelay")

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


def describe(exc: BaseException) -> str:
    """One line for the log: what the database said, without a traceback (an outage is not a bug)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Outage:
    """Logs that a background loop (``who``) lost its database once when it begins and once when it ends, instead
    of a traceback every second while it lasts."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.since: float | None = None

    def began(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("%s: the database cannot serve now (%s); retrying every second", self.who, describe(exc))

    def ended(self) -> None:
        if self.since is not None:
            log.warning("%s: the database serves again after %.1f s", self.who, time.monotonic() - self.since)
            self.since = None


class OutageLines(logging.Filter):
    """A log filter: a record carrying an outage exception (:data:`UNAVAILABLE`: asyncpg's pool logs one while it
    cannot reconnect) is told in one line, without its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and isinstance(exc, UNAVAILABLE):
            record.msg = f"{record.getMessage()} ({describe(exc)})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True
