"""What a message adds to the console overview's rollups: counts, cost and latency buckets, by the minute and
hour of its acceptance.

A message adds ``accepted`` when it is stored and the rest once, when it becomes final (its outcome, error, cost,
accept→final latency, each step it tried and whether it failed over, and how long each delivered step took).
Numbers are kept per bucket of acceptance time, so "the last 24 hours" means "the messages accepted in them":
what is still pending is ``accepted`` less the finished ones.

Latencies go into fixed buckets on a log scale (four a doubling, from 1 ms), so medians and 95th percentiles
come from bucket counts (within 19 % of the exact value) and buckets of any two periods simply add up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast

from omnirelay.domain.lifecycle import NOT_TRIED, AttemptState
from omnirelay.domain.message import MessageState

#: The widths (seconds) of the kept buckets: by minute (for short ranges) and by hour.
MINUTE = 60
HOUR = 3600
SPANS = (MINUTE, HOUR)

#: Row kinds.
ACCEPTED = "accepted"
FINAL = "final"
"""By the channel it ended on, status group and error name: ``n`` messages, ``cost`` their price."""
LATENCY = "latency"
"""Accept→final of finished messages that tried a step, by status group and latency bucket."""
TRIED = "tried"
"""Steps tried, by step (1-based) and channel."""
FAILED_OVER = "failover"
"""Steps that failed and were followed by a later step, by step and channel."""
STEP_LATENCY = "steplatency"
"""Submission→delivery of delivered steps, by channel and latency bucket."""

FAILED_STATES = frozenset({AttemptState.UNDELIVERABLE, AttemptState.REJECTED, AttemptState.EXPIRED})
NOT_TRIED_STATES = NOT_TRIED
DELIVERED_STATES = frozenset({AttemptState.DELIVERED, AttemptState.SEEN})

_PER_DOUBLING = 4
_MAX_BUCKET = 160  # 2**40 ms: a year and more

Row = tuple[int, float, str, str, int, int, str, int, int, float]
"""(account_id, created_at, kind, channel, step, status_group, error, latency bucket, n, cost)."""

Key = tuple[int, int, int, int, str, str, int, int, str, int]
"""(account_id, span, bucket start, shard, kind, channel, step, status_group, error, latency bucket)."""


def latency_bucket(seconds: float) -> int:
    """The bucket of a latency: 0 below 1 ms, then four buckets per doubling."""
    ms = seconds * 1000.0
    if not ms >= 1.0:  # also NaN
        return 0
    return min(_MAX_BUCKET, 1 + math.floor(math.log2(ms) * _PER_DOUBLING))


def bucket_seconds(bucket: int) -> float:
    """A representative latency of a bucket (its geometric middle), in seconds."""
    if bucket <= 0:
        return 0.0005
    return float(2.0 ** ((bucket - 0.5) / _PER_DOUBLING) / 1000.0)


def quantile(buckets: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of latencies counted per bucket, in seconds; None when there are none."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return bucket_seconds(bucket)
    return bucket_seconds(max(buckets))


def accepted(account_id: int, created_at: float, n: int = 1) -> Row:
    """What storing ``n`` messages at ``created_at`` adds."""
    return (account_id, created_at, ACCEPTED, "", 0, 0, "", 0, n, 0.0)


def finished(account_id: int, created_at: float, state: MessageState, group: int, cost: float) -> list[Row]:
    """What a message adds when it becomes final (``group``: its Infobip status group, ``cost``: the price of its
    final report, 0 when it has none)."""
    channel = state.channel or "-"
    rows: list[Row] = [(account_id, created_at, FINAL, channel, 0, group, state.error, 0, 1, cost)]
    attempts = state.attempts
    tried = [a for a in attempts if a.state not in NOT_TRIED_STATES]
    if tried and state.done_at is not None:
        rows.append(
            (account_id, created_at, LATENCY, "", 0, group, "", latency_bucket(state.done_at - created_at), 1, 0.0)
        )
    for attempt in tried:
        step = attempt.step + 1
        rows.append((account_id, created_at, TRIED, attempt.channel, step, 0, "", 0, 1, 0.0))
        if attempt.state in FAILED_STATES and any(b.step > attempt.step for b in tried):
            rows.append((account_id, created_at, FAILED_OVER, attempt.channel, step, 0, "", 0, 1, 0.0))
        if attempt.state in DELIVERED_STATES and attempt.done_at is not None:
            bucket = latency_bucket(attempt.done_at - attempt.started_at)
            rows.append((account_id, created_at, STEP_LATENCY, attempt.channel, 0, 0, "", bucket, 1, 0.0))
    return rows


def keyed(rows: Iterable[Row], shard: int = 0) -> list[tuple[Key, int, float]]:
    """The rows summed per stored key, a minute and an hour row each, sorted by key (so that concurrent writers
    take the rows' locks in one order)."""
    # Summed by minute first (the messages of one transaction share few keys): then few keys are made twice.
    minutes: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        at = int(row[1])
        short = (row[0], at - at % MINUTE, *row[2:8])
        cell = minutes.get(short)
        if cell is None:
            minutes[short] = [row[8], row[9]]
        else:
            cell[0] += row[8]
            cell[1] += row[9]
    sums: dict[tuple[Any, ...], list[float]] = {}
    for short, (n, cost) in minutes.items():
        account_id, minute = short[0], short[1]
        sums[(account_id, MINUTE, minute, shard, *short[2:])] = [n, cost]
        hour_key = (account_id, HOUR, minute - minute % HOUR, shard, *short[2:])
        cell = sums.get(hour_key)
        if cell is None:
            sums[hour_key] = [n, cost]
        else:
            cell[0] += n
            cell[1] += cost
    return [(cast(Key, key), int(cell[0]), cell[1]) for key, cell in sorted(sums.items())]
