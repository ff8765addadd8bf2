"""Inbound SMS: parts deduplicated and assembled into messages, kept for the pull and pushed as webhooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omnirelay.domain.inbound import Build, InboundMessage, InboundPart
from omnirelay.store.flow import All, Dialect, Exec, Flow, Rows, Value
from omnirelay.store.inbound import (
    RETENTION_S,
    InboundCounts,
    fresh_parts,
    message_of,
    message_rows,
    part_row,
    single,
)


def record_inbound(
    d: Dialect, parts: list[InboundPart], now: float, window_s: float, build: Build
) -> Flow[InboundCounts]:
    """Store received parts of inbound SMS, dropping those seen within ``window_s`` (see the protocol).

    Two workers may get parts of one message (or the same resend) at once (on PostgreSQL): the key's row lock
    makes the second see the first's key, and a lock per message group makes one of them find the message
    complete.
    """
    unique = fresh_parts(parts)
    groups = sorted({p.group for p in unique if p.total > 1})
    if groups:
        yield Exec(d.q.lock_inbound_groups, groups)
    # keys in one order in every transaction: two batches holding the same resends never wait in a circle
    taken = yield All(d.q.see_inbound_keys, sorted(p.key for p in unique), now, now - window_s)
    keys = {r[0] for r in taken}
    fresh = [p for p in unique if p.key in keys]
    done = [single(p, now) for p in fresh if p.total <= 1]
    totals = {p.group: p.total for p in fresh if p.total > 1}
    if totals:
        yield Rows(d.q.put_inbound_parts, [part_row(p, now) for p in fresh if p.total > 1])
        by_group = _by_group((yield All(d.q.inbound_group_parts, list(totals))))
        complete = [g for g, found in by_group.items() if len(found) >= totals[g]]
        if complete:
            yield Exec(d.q.drop_inbound_groups, complete)
            done += [message_of(by_group[g]) for g in complete]
    yield from _store(d, done, now, build)
    return InboundCounts(len(fresh), len(parts) - len(fresh), len(done))


def sweep_inbound(d: Dialect, now: float, part_timeout_s: float, window_s: float, build: Build) -> Flow[int]:
    """Deliver long messages whose parts stopped coming; forget old keys and unpulled messages."""
    groups = [r[0] for r in (yield All(d.q.stale_inbound_groups, now - part_timeout_s))]
    done: list[InboundMessage] = []
    if groups:
        yield Exec(d.q.lock_inbound_groups, groups)
        rows = yield All(d.q.take_inbound_groups, groups)
        yield Exec(d.q.drop_taken_inbound_groups, groups)
        done = [message_of(found) for found in _by_group(rows).values()]
        yield from _store(d, done, now, build)
    yield Exec(d.q.forget_inbound_keys, now - window_s)
    yield Exec(d.q.forget_inbound_messages, now - RETENTION_S)
    return len(done)


def take_inbound(d: Dialect, account_id: int, limit: int, since: float) -> Flow[tuple[list[bytes], int]]:
    """The account's oldest inbound messages, removed as they are taken, and how many remain."""
    rows = yield All(d.q.take_inbound, account_id, since, limit)
    yield Rows(d.q.drop_taken_inbound, [(r[0],) for r in rows])
    left = yield Value(d.q.inbound_left, account_id, since)
    return [bytes(r[1]) for r in sorted(rows, key=lambda r: r[0])], int(left)


def _by_group(rows: Sequence[Sequence[Any]]) -> dict[str, list[Sequence[Any]]]:
    """Parts rows by their group (the first column), in order."""
    by_group: dict[str, list[Sequence[Any]]] = {}
    for r in rows:
        by_group.setdefault(r[0], []).append(r)
    return by_group


def _store(d: Dialect, messages: list[InboundMessage], now: float, build: Build) -> Flow[None]:
    """Keep complete inbound messages for the pull and queue their webhooks (waking the notifiers)."""
    kept, pushed = message_rows(messages, now, build)
    yield Rows(d.q.keep_inbound, kept)
    yield Rows(d.q.push_webhooks, pushed)
    if pushed:
        yield Exec(d.q.notify_outbox)
