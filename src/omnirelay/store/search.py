"""What both stores share of the console's message search: the error filter's needle and the keyset order."""

from __future__ import annotations

import re

from omnirelay.store.base import Cursor

ERROR_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
"""The shape of an error name (``EC_ABSENT_SUBSCRIBER``): what the error filter accepts."""


def error_needle(error: str) -> bytes:
    """The bytes a message's stored state contains when it has ``error``, as its final error or a step's (the
    state is compact JSON, where every error is the value of an ``"error"`` key)."""
    if not ERROR_NAME.fullmatch(error):
        raise ValueError(f"not an error name: {error!r}")
    return b'"error":"' + error.encode() + b'"'


def keyset(after: Cursor | None, before: Cursor | None) -> tuple[str, tuple[float, float, int], bool]:
    """The condition of a page next to a cursor, with ``?`` for its three arguments, and whether the page is read
    oldest first (the page just newer than ``before``; its rows are then reversed). The ``created_at`` bound
    alone can use the (account, created_at) index; the id breaks ties between equal times."""
    if after is not None:
        return "m.created_at <= ? AND (m.created_at < ? OR m.id < ?)", (after[0], after[0], after[1]), False
    if before is not None:
        return "m.created_at >= ? AND (m.created_at > ? OR m.id > ?)", (before[0], before[0], before[1]), True
    return "", (0.0, 0.0, 0), False
