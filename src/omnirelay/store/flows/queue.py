"""The health of the engine's queue: can the store write, how much is due, when is the next job due."""

from __future__ import annotations

from omnirelay.store.flow import Dialect, Exec, Flow, One, Value


def check_writable(d: Dialect, now: float) -> Flow[None]:
    """Commit one small write (the store raises when the database cannot write)."""
    yield Exec(d.q.check_writable, now)


def queue_stats(d: Dialect, now: float) -> Flow[tuple[int, float | None]]:
    """How many jobs are due, and when the oldest of them fell due."""
    row = yield One(d.q.queue_stats, now)
    return int(row[0]), row[1]


def next_due(d: Dialect) -> Flow[float | None]:
    """When the earliest job is due, or None when there is none."""
    due = yield Value(d.q.next_due)
    return float(due) if due is not None else None
