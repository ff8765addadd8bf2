"""The engine's transaction: claim due jobs, let the engine decide, write its changes; and the retention purge.

The decision (``handle``) runs inside the flow, so inside the store's transaction: on SQLite on the writer
thread, on PostgreSQL between two statements of the worker's connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from omnirelay.domain import rollups
from omnirelay.domain.lifecycle import JobKind
from omnirelay.store.base import Change, Work
from omnirelay.store.flow import All, Dialect, Exec, Flow, Rows, Value
from omnirelay.store.rows import ROLLUP_KEEP_S, receipt_job

T = TypeVar("T")
LAST_ID = (1 << 63) - 1
"""No message id is this high: ``purge`` anywhere."""
Handle = Callable[[list[Work]], tuple[list[Change], T]]
_START = b'{"type":"start"}'


def rollup_rows(d: Dialect, rows: list[rollups.Row]) -> list[tuple[Any, ...]]:
    """Rollup rows summed per stored key (in the dialect's shard), as the rows of ``upsert_rollups``."""
    return [(*key, n, cost) for key, n, cost in rollups.keyed(rows, d.rollup_shard)]


def engine_step(
    d: Dialect,
    now: float,
    limit: int,
    events: list[tuple[int, bytes]],
    handle: Handle[T],
    later: list[tuple[int, JobKind, int, float, bytes]] | None,
) -> Flow[tuple[T, T]]:
    """Store the ``later`` jobs, decide the ``events``, then claim up to ``limit`` due jobs (those of messages
    under way first) and decide them; ``handle``'s answer for each part.

    A claimed job is deleted in the transaction that stores its consequences: a crash either keeps the job (and
    nothing happened) or has its whole effect.
    """
    yield Rows(d.q.insert_jobs, later or [])
    recorded = yield from decide_and_apply(d, [(None, m, e) for m, e in events], handle, now)
    jobs: list[tuple[int | None, int, bytes | None]] = []
    if limit > 0:
        for claim in (d.q.claim_under_way, d.q.claim_new):
            rows = yield All(claim, now, limit - len(jobs))
            jobs += [(r[0], r[1], r[2]) for r in sorted(rows, key=lambda r: (r[3], r[0]))]
        yield Rows(d.q.drop_claimed, [(j[0],) for j in jobs])
    claimed = yield from decide_and_apply(d, jobs, handle, now)
    return recorded, claimed


def decide_and_apply(
    d: Dialect, jobs: list[tuple[int | None, int, bytes | None]], handle: Handle[T], now: float
) -> Flow[T]:
    """Load the messages of ``jobs`` (job id or None, message, event or None), let ``handle`` decide, write the
    changes."""
    ids = sorted({m for _j, m, _e in jobs})
    records: dict[int, Any] = {}
    if ids:
        records = {r[0]: r for r in (yield All(d.q.work_of, ids, now))}
    work = []
    for job_id, m, event in jobs:
        r = records.get(m)
        if r is not None:
            work.append(
                Work(
                    job_id=job_id,
                    event=event or _START,
                    message=r[0],
                    account_id=r[1],
                    message_id=r[2],
                    bulk_id=r[3],
                    to_json=bytes(r[4]),
                    created_at=r[5],
                    state=bytes(r[6]),
                    request_id=r[7],
                    payload=bytes(r[8]),
                    blocked=r[9].encode() if r[9] else None,
                )
            )
    changes, result = handle(work)
    if changes:
        yield from apply(d, changes, now)
    return result


def apply(d: Dialect, changes: list[Change], now: float) -> Flow[None]:
    """Write the engine's changes, one statement per kind of row."""
    yield from d.message_updates(changes)
    yield Rows(d.q.cancel_expiry, [(c.message,) for c in changes if c.cancel_expiry])
    yield Rows(d.q.insert_jobs, [(c.message, *job) for c in changes for job in c.jobs])
    yield Rows(d.q.insert_reports, [(c.account_id, c.message, *c.report) for c in changes if c.report is not None])
    hooks = [(c.account_id, *w, now, c.message) for c in changes for w in c.webhooks]
    if hooks:  # in the order of c.webhooks: the order a message's reports are posted in
        yield Rows(d.q.queue_report_webhooks, hooks)
        yield Exec(d.q.notify_outbox)
    # one row per key: a statement's upsert may not meet the same row twice
    remembered = {(c.account_id, address, channel): until for c in changes for channel, address, until in c.remember}
    yield Rows(d.q.remember_capabilities, [(*k, v) for k, v in remembered.items()])
    yield Rows(d.q.upsert_rollups, rollup_rows(d, [row for c in changes for row in c.rollup]))
    submitted = [(c.message, *s, now) for c in changes for s in c.submitted]
    yield Rows(d.q.insert_submissions, submitted)
    if any(s[3] for s in submitted):
        yield Exec(d.q.share_receipts_lock)
        # receipts that came before their provider id was stored (a fast SMSC, a webhook racing the answer)
        if (yield Value(d.q.any_held_receipt)):
            matched = yield All(d.q.take_held_receipts)
            yield Rows(d.q.insert_jobs, [receipt_job(m, step, bytes(data), now) for _h, m, step, data in matched])
            yield Rows(d.q.drop_held_receipts, [(h,) for h, *_ in matched])


def purge(d: Dialect, before: float, limit: int, now: float, below: int = LAST_ID) -> Flow[int]:
    """Remove up to ``limit`` messages finished before ``before`` (with an id below ``below``), with what belongs
    to them only; old held receipts; rollup rows past their keep (they outlive their messages, see
    ``ROLLUP_KEEP_S``)."""
    rows = yield All(d.q.purge_candidates, before, limit, below)
    yield Exec(d.q.purge_held_receipts, before)
    for span, keep_s in ROLLUP_KEEP_S.items():
        yield Exec(d.q.purge_rollups, span, now - keep_s)
    if not rows:
        return 0
    messages = [(r[0],) for r in rows]
    for table in (d.q.purge_submissions, d.q.purge_jobs, d.q.purge_reports, d.q.purge_messages):
        yield Rows(table, messages)
    yield Rows(d.q.purge_requests, [(r,) for r in {r[1] for r in rows}])
    return len(rows)
