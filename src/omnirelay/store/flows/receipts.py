"""Receipts from the channels, queued for the engine by their submission."""

from __future__ import annotations

from omnirelay.domain.delivery import Receipt
from omnirelay.store.flow import All, Dialect, Exec, Flow, Rows
from omnirelay.store.rows import receipt_data, receipt_job


def record_receipts(d: Dialect, receipts: list[Receipt], now: float) -> Flow[None]:
    """Queue each receipt as a job of the step whose submission has its (channel, provider_id), the latest such
    submission; hold a receipt whose submission is not stored yet (the engine's apply takes it up)."""
    yield Exec(d.q.take_receipts_lock)
    rows = yield All(d.q.receipt_steps, [r.channel for r in receipts], [r.provider_id for r in receipts])
    found = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    jobs, held = [], []
    for r in receipts:
        step = found.get((r.channel, r.provider_id))
        if step is None:
            held.append((r.channel, r.provider_id, receipt_data(r), now))
        else:
            jobs.append(receipt_job(*step, receipt_data(r), now))
    if jobs:
        yield Rows(d.q.insert_jobs, jobs)
        yield Exec(d.q.notify_receipt_jobs)
    yield Rows(d.q.hold_receipts, held)
