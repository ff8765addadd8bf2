"""Accepting requests: the messages of a batch of requests stored, each request answered."""

from __future__ import annotations

from omnirelay.store.base import Stored
from omnirelay.store.flow import All, Call, Dialect, Flow
from omnirelay.store.flows.engine import rollup_rows
from omnirelay.store.rows import AcceptItem, accept_rollup, plan_accepts, supplied_ids


class Retry(Exception):
    """Another process stored one of the batch's client-supplied message ids meanwhile: run the batch again
    (PostgreSQL; SQLite's single writer never races)."""


def accept(d: Dialect, items: list[AcceptItem]) -> Flow[list[list[Stored]]]:
    """Store a batch of requests' messages in one transaction; the answer of each request.

    Replays and duplicates of client-supplied message ids are decided from what is stored (:func:`plan_accepts`);
    the fresh rows, a start job for each message not refused, and the rollups are inserted by the dialect
    (:meth:`Dialect.insert_accepted`: the fastest form differs between the databases).
    """
    wanted = supplied_ids(items)
    existing: dict[tuple[int, str], tuple[bytes, bytes, str | None]] = {}
    if wanted:
        rows = yield All(d.q.accepted_ids, [a for a, _ in wanted], [m for _, m in wanted])
        existing = {(r[0], r[1]): (bytes(r[2]), bytes(r[3]), r[4]) for r in rows}
    plan = plan_accepts(items, existing)
    if plan.fresh:
        expected, tally = 0, []
        for i, messages in plan.fresh:
            expected += len(messages)
            tally += accept_rollup(items[i], messages)
        stored = yield Call(d.insert_accepted, items, plan.fresh, rollup_rows(d, tally))
        if stored != expected:
            raise Retry
    return plan.answers(items)
