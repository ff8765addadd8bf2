"""The reports' pull, the logs and one message's view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omnirelay.store.base import LogQuery, MessageView
from omnirelay.store.flow import All, Dialect, Flow, One, Rows
from omnirelay.store.search import log_filters


def view_from_row(row: Sequence[Any]) -> MessageView:
    """A :class:`MessageView` from a row of the view's columns (``message_id`` first)."""
    return MessageView(row[0], row[1], bytes(row[2]), row[3], bytes(row[4]), bytes(row[5]))


def take_reports(
    d: Dialect, account_id: int, bulk_id: str | None, message_id: str | None, channel: str | None, limit: int
) -> Flow[list[bytes]]:
    """The oldest final reports not yet taken, removed as they are taken (each is returned once)."""
    # Only the filters given, so that the index on (account_id, id) serves the common case.
    given = [
        (c, v) for c, v in (("bulk_id", bulk_id), ("message_id", message_id), ("channel", channel)) if v is not None
    ]
    filters = "".join(f" AND {column} = {d.placeholder(n)}" for n, (column, _) in enumerate(given, start=3))
    rows = yield All(d.q.take_reports.format(filters=filters), account_id, limit, *(v for _, v in given))
    yield Rows(d.q.drop_taken_reports, [(r[0],) for r in rows])
    return [bytes(r[1]) for r in sorted(rows, key=lambda r: r[0])]


def logs_statement(d: Dialect, account_id: int, query: LogQuery) -> tuple[str, list[Any]]:
    """The statement of :func:`logs` and its arguments."""
    w = log_filters(d, account_id, query)
    where = w.sql()
    return d.q.logs.format(where=where, limit=w.arg(query.limit)), w.args


def logs(d: Dialect, account_id: int, query: LogQuery) -> Flow[list[MessageView]]:
    """Messages matching the filters, newest first."""
    sql, args = logs_statement(d, account_id, query)
    rows = yield All(sql, *args)
    return [view_from_row(r) for r in rows]


def message(d: Dialect, account_id: int, message_id: str) -> Flow[MessageView | None]:
    """One message of the account, or None."""
    row = yield One(d.q.message_view, account_id, message_id)
    return view_from_row(row) if row else None


def unindexed_messages(d: Dialect, limit: int) -> Flow[list[tuple[int, bytes, bytes, bytes]]]:
    """Messages stored before the logs' filter columns existed: (id, to_json, state, payload)."""
    rows = yield All(d.q.unindexed_messages, limit)
    return [(r[0], bytes(r[1]), bytes(r[2]), bytes(r[3])) for r in rows]


def set_log_columns(d: Dialect, rows: list[tuple[int, str | None, str | None, str | None]]) -> Flow[None]:
    """Fill the filter columns of messages stored before they existed (unless the engine did meanwhile)."""
    yield Rows(d.q.set_log_columns, rows)
