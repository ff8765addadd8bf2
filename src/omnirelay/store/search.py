"""The conditions of the logs' filters and of the console's message search, written once for both databases.

Only the filters given appear in the statement: each names an index to read, and a generic plan of
"($n IS NULL OR column = $n)" (PostgreSQL prepares the statement once) could not choose the index of the
filter given. The forms that differ between the databases (placeholders, a list argument, a substring test)
come from the :class:`~omnirelay.store.flow.Dialect`.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from omnirelay.store.base import Cursor, LogQuery, MessageSearch
from omnirelay.store.flow import Dialect

ERROR_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
"""The shape of an error name (``EC_ABSENT_SUBSCRIBER``): what the error filter accepts."""


def error_needle(error: str) -> bytes:
    """The bytes a message's stored state contains when it has ``error``, as its final error or a step's (the
    state is compact JSON, where every error is the value of an ``"error"`` key)."""
    if not ERROR_NAME.fullmatch(error):
        raise ValueError(f"not an error name: {error!r}")
    return b'"error":"' + error.encode() + b'"'


class Where:
    """Conditions being built, with their arguments, in one database's placeholders."""

    def __init__(self, d: Dialect) -> None:
        self.d = d
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        """Add an argument; its placeholder."""
        self.args.append(value)
        return self.d.placeholder(len(self.args))

    def add(self, condition: str) -> None:
        """Add a condition (its arguments added with :meth:`arg`)."""
        self.conditions.append(condition)

    def sql(self) -> str:
        """The conditions joined by AND."""
        return " AND ".join(self.conditions)


def log_filters(d: Dialect, account_id: int, query: LogQuery) -> Where:
    """The conditions of the logs' filters, on ``messages m``."""
    w = Where(d)
    w.add(f"m.account_id = {w.arg(account_id)}")
    w.add(f"m.created_at >= {w.arg(query.since)}")
    if query.until is not None:
        w.add(f"m.created_at <= {w.arg(query.until)}")
    for column, values in (("m.bulk_id", query.bulk_ids), ("m.message_id", query.message_ids)):
        if values:
            w.add(d.one_of(column, values, w.arg))
    if query.to is not None:
        w.add(d.contains_text("m.to_json", w.arg(msgspec.json.encode(query.to).decode())))
    for column, value in (
        ("m.status_group", query.status_group),
        ("m.channel", query.channel),
        ("m.sender", query.sender),
        ("m.mcc", query.mcc),
        ("m.mnc", query.mnc),
    ):
        if value is not None:
            w.add(f"{column} = {w.arg(value)}")
    return w


def search_filters(d: Dialect, account_id: int, search: MessageSearch) -> Where:
    """The conditions of a console search: the logs' filters and the error name."""
    w = log_filters(d, account_id, search.filters)
    if search.error is not None:
        w.add(d.contains_bytes("m.state", w.arg(error_needle(search.error))))
    return w


def keyset(w: Where, after: Cursor | None, before: Cursor | None) -> bool:
    """Add the condition of a page next to a cursor; whether the page is read oldest first (the page just newer
    than ``before``; its rows are then reversed). The ``created_at`` bound alone can use the (account,
    created_at) index; the id breaks ties between equal times."""
    if after is not None:
        w.add(f"m.created_at <= {w.arg(after[0])} AND (m.created_at < {w.arg(after[0])} OR m.id < {w.arg(after[1])})")
        return False
    if before is not None:
        w.add(
            f"m.created_at >= {w.arg(before[0])} AND (m.created_at > {w.arg(before[0])} OR m.id > {w.arg(before[1])})"
        )
        return True
    return False
