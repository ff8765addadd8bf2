"""Store flows, written once for both databases.

A flow is a generator: it yields the statements it needs, one :class:`Op` at a time, and receives each one's
result; what it returns is the flow's answer. It does no I/O itself, so the same flow runs synchronously on
SQLite's writer thread (or its read connection) and awaiting each statement on a PostgreSQL connection; each
store has a driver (``sqlite.run_flow``, ``postgres.run_flow``) that executes the ops. A flow that writes runs
in one transaction of its store (``SqlStore._write``): on SQLite the writer's group transaction, on PostgreSQL
a transaction of its own.

The statements are named blocks of ``store/sql/<store>/queries/`` (:mod:`omnirelay.store.queries`), reached
through the store's :class:`Dialect`; SQL built from a request's filters comes from the dialect's builders.
What the two databases do differently in the middle of a flow (SQLite's multi-row ``VALUES`` against
PostgreSQL's arrays) is a :class:`Call` of a function of the dialect, so the flow around it stays one.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from omnirelay.store.queries import Queries

if TYPE_CHECKING:
    from omnirelay.store.base import Change, NewMessage
    from omnirelay.store.rows import AcceptItem

T = TypeVar("T")


class Op:
    """A statement with its arguments; what the flow receives back depends on the kind."""

    __slots__ = ("args", "sql")

    def __init__(self, sql: str, *args: Any) -> None:
        self.sql = sql
        self.args = args

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sql[:60]!r}, {len(self.args)} args)"


class One(Op):
    """The first row, or None."""

    __slots__ = ()


class All(Op):
    """Every row."""

    __slots__ = ()


class Value(Op):
    """The first column of the first row, or None."""

    __slots__ = ()


class Exec(Op):
    """How many rows the statement changed."""

    __slots__ = ()


class Each(Op):
    """Each ``;``-separated statement of the block in turn, all with the same arguments; None."""

    __slots__ = ()


class Rows(Op):
    """The statement once per row of ``rows`` (None). SQLite binds each row; PostgreSQL binds the rows' columns
    as arrays, once (its statement takes them with ``unnest``). No rows: nothing runs."""

    __slots__ = ()

    def __init__(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        super().__init__(sql, rows)


class Call:
    """``fn(connection, *args)``: a step that the two databases do differently, given by the dialect (on
    PostgreSQL a coroutine function); its return value is the result."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args


Step: TypeAlias = Op | Call
Flow: TypeAlias = Generator[Step, Any, T]


class Dialect(Protocol):
    """What a flow needs of its database beyond the named statements."""

    @property
    def q(self) -> Queries:
        """The database's named statements."""
        ...

    # The builders of SQL made from a request's filters (the logs, the console's search, the reports' pull).
    # The flow chooses the conditions, once; these give the forms that differ: placeholders, a list argument,
    # a substring test.

    def placeholder(self, n: int) -> str:
        """The placeholder of the statement's ``n``-th argument (from 1)."""
        ...

    def one_of(self, column: str, values: Sequence[str], arg: Callable[[Any], str]) -> str:
        """The condition "``column`` is one of ``values``"; ``arg`` adds an argument and gives its placeholder."""
        ...

    def contains_text(self, column: str, needle: str) -> str:
        """The condition "the JSON text of ``column`` contains the argument ``needle`` (a placeholder)"."""
        ...

    def contains_bytes(self, column: str, needle: str) -> str:
        """The condition "the bytes of ``column`` contain the argument ``needle`` (a placeholder)"."""
        ...

    @property
    def rollup_shard(self) -> int:
        """The shard of the rollup rows this process adds to (see ``rollups.keyed``)."""
        ...

    def message_updates(self, changes: list[Change]) -> list[Rows]:
        """The statements that write the engine's changes of messages (state, status group, channel, done time
        and, where given, the logs' filter columns)."""
        ...

    def insert_accepted(
        self, conn: Any, items: list[AcceptItem], fresh: list[tuple[int, list[NewMessage]]], tally: list[Any]
    ) -> Any:
        """A :class:`Call`: insert the accepted requests ``fresh`` (request index, its messages to store), a start
        job for each message not refused, and the rollup rows ``tally``; how many messages were stored."""
        ...


def columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows as column lists, for PostgreSQL's ``unnest``."""
    return [[r[i] for r in rows] for i in range(len(rows[0]))] if rows else []


def statements(sql: str) -> list[str]:
    """The statements of an :class:`Each` block."""
    return [s.strip() for s in sql.split(";") if s.strip()]
