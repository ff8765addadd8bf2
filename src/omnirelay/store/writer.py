"""Group commit for SQLite: one writer thread runs every write that arrives while it is busy in one transaction.

Callers hand in a function of the connection and await its result; the writer drains everything queued,
runs each function under its own savepoint (one failing function does not undo the others), commits once
and only then wakes the callers. A request is answered only after the commit that made it durable, and a
transaction that fails as a whole is split to find the member that failed it (one bad write never fails
another).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from omnirelay.store.errors import UNAVAILABLE

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]
_Item = tuple[WriteFn, "asyncio.Future[Any]", asyncio.AbstractEventLoop]
_Done = tuple["asyncio.Future[Any]", asyncio.AbstractEventLoop, Any, BaseException | None]

MAX_BATCH = 2000


def _settle(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, error in items:
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)


class Writer:
    """The single writer of one SQLite database."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], lock_path: str | None = None) -> None:
        """``lock_path`` names a file that every process writing the same database locks around each
        transaction; None when this writer is the database's only writer."""
        self._connect = connect
        self._lock_path = lock_path
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.transactions = 0

    def start(self) -> None:
        """Open the connection in the writer thread."""
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self) -> None:
        """Finish what is queued, then close."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the next group transaction and return its result once committed.

        ``fn`` may run again when its first transaction failed as a whole (nothing of that run is kept): its
        effects belong in the connection, or in what it returns.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, fut, loop))
        return await fut

    def _run(self) -> None:
        try:
            conn = self._connect()
            lock = open(self._lock_path, "a+b") if self._lock_path else None  # noqa: SIM115 - closed below
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            if lock is not None:
                # Another process writes the same file. SQLite alone would make the loser of a race poll
                # (sleeping 1, 2, 5, 10... ms); a blocking flock wakes it the moment the winner commits, and
                # what arrives meanwhile joins this transaction.
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                self._commit(conn, batch)
            finally:
                if lock is not None:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        conn.close()
        if lock is not None:
            lock.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]]
        by_loop = defaultdict(list)
        for fut, loop, result, error in self._transaction(conn, batch):
            by_loop[loop].append((fut, result, error))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed; its callers are gone
                loop.call_soon_threadsafe(_settle, items)

    def _transaction(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Done]:
        """Run ``batch`` in one transaction. When the transaction as a whole fails (its commit, or a function that
        took the transaction down with it), nothing of it is durable: a failure that would fail any write
        (disk full, I/O error, read-only file) is every member's answer; any other may be one member's doing, so
        the halves are tried again on their own, down to the culprit, and every other member is answered."""
        try:
            done = self._attempt(conn, batch)
        except Exception as exc:
            if conn.in_transaction:
                conn.rollback()
            if len(batch) == 1 or isinstance(exc, UNAVAILABLE):
                return [(fut, loop, None, exc) for _fn, fut, loop in batch]
            half = len(batch) // 2
            return self._transaction(conn, batch[:half]) + self._transaction(conn, batch[half:])
        self.transactions += 1
        return done

    def _attempt(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Done]:
        done: list[_Done] = []
        conn.execute("BEGIN IMMEDIATE")
        for fn, fut, loop in batch:
            conn.execute("SAVEPOINT w")
            try:
                result = fn(conn)
            except Exception as exc:
                if not conn.in_transaction:  # SQLite rolled the whole transaction back (full, I/O error...)
                    raise
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                done.append((fut, loop, None, exc))
            else:
                conn.execute("RELEASE w")
                done.append((fut, loop, result, None))
        conn.execute("COMMIT")
        return done
