"""Webhook deliveries: claimed by the notifier with a lease, settled, and queued from outside the engine."""

from __future__ import annotations

from omnirelay.store.base import Delivery
from omnirelay.store.flow import All, Dialect, Exec, Flow, Rows

GIVEN_UP = float("inf")
"""The due time of a webhook delivery whose tries are used up (kept, never tried again, blocks nothing)."""


def claim_deliveries(d: Dialect, now: float, limit: int, lease_s: float) -> Flow[list[Delivery]]:
    """Webhook deliveries that are due, leased for ``lease_s`` so no other notifier takes them meanwhile; one
    waits while an earlier delivery of the same message is in the outbox (unsent, in flight or to be retried,
    not given up), so a message's reports arrive in order."""
    rows = yield All(d.q.claim_deliveries, now, now + lease_s, limit)
    yield Rows(d.q.lease_deliveries, [(r[0], now + lease_s) for r in rows])
    return [Delivery(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in rows]


def settle_deliveries(d: Dialect, done: list[int], retries: list[tuple[int, float | None, str]]) -> Flow[None]:
    """Drop the deliveries the receivers acknowledged; reschedule the others (``None``: tries used up, the row
    is kept and marked, never lost silently)."""
    yield Rows(d.q.drop_deliveries, [(i,) for i in done])
    yield Rows(d.q.retry_deliveries, [(i, due if due is not None else GIVEN_UP, error) for i, due, error in retries])


def push_webhooks(d: Dialect, items: list[tuple[int, str, str, str, bytes]], now: float) -> Flow[None]:
    """Queue webhook deliveries that do not come from the engine (inbound messages)."""
    yield Rows(d.q.push_webhooks, [(*item, now) for item in items])
    yield Exec(d.q.notify_outbox)
