"""What both stores share of inbound SMS: parts rows into messages, messages into rows to insert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from omnirelay.domain.inbound import Build, InboundMessage, InboundPart, assemble, webhook_body

#: The columns of ``inbound_parts`` that :func:`message_of` reads, in its order.
PART_COLS = "grp, seq, total, account_id, url, source, destination, text, at"
#: The report id of an inbound SMS's webhook delivery: ``inbound-sms.<messageId>``.
REPORT_PREFIX = "inbound-sms."
#: How long a message stays to be pulled by ``GET /sms/1/inbox/reports`` (Infobip: the last 48 hours).
RETENTION_S = 48 * 3600.0


class InboundCounts(NamedTuple):
    """What :meth:`~omnirelay.store.base.Store.record_inbound` did with a batch of parts."""

    stored: int
    """Parts new to the store."""
    duplicates: int
    """Parts seen within the dedupe window (the SMSC's resends): dropped."""
    completed: int
    """Messages complete with these parts (stored for the pull, pushed when the account has an inbound_url)."""


def single(part: InboundPart, now: float) -> InboundMessage:
    """The message of a one-part SMS."""
    return InboundMessage(part.account_id, part.url, part.source, part.destination, part.text, 1, 1, now)


def part_row(part: InboundPart, now: float) -> tuple[Any, ...]:
    """The ``inbound_parts`` row of a part of a long SMS (columns of :data:`PART_COLS`)."""
    return (part.group, part.seq, part.total, part.account_id, part.url, part.source, part.destination, part.text, now)


def message_of(rows: Sequence[Sequence[Any]]) -> InboundMessage:
    """The message made of one group's ``inbound_parts`` rows (all of them, or all that arrived)."""
    first = min(rows, key=lambda r: r[8])
    text = assemble([(r[1], r[7]) for r in rows])
    return InboundMessage(first[3], first[4], first[5], first[6], text, len(rows), first[2], first[8])


def fresh_parts(parts: Sequence[InboundPart]) -> list[InboundPart]:
    """The parts of a batch without the repeats within it (same key), in order."""
    seen: set[str] = set()
    out = []
    for part in parts:
        if part.key not in seen:
            seen.add(part.key)
            out.append(part)
    return out


def message_rows(
    messages: Sequence[InboundMessage], now: float, build: Build
) -> tuple[list[tuple[int, float, bytes]], list[tuple[int, str, str, str, bytes, float]]]:
    """The ``inbound_messages`` rows (account, received_at, body) and ``outbox`` rows (account, report id, url,
    content type, body, due) of complete messages."""
    kept: list[tuple[int, float, bytes]] = []
    pushed: list[tuple[int, str, str, str, bytes, float]] = []
    for message in messages:
        message_id, result = build(message)
        kept.append((message.account_id, message.received_at, result))
        if message.url:
            body = webhook_body(result)
            pushed.append((message.account_id, REPORT_PREFIX + message_id, message.url, "application/json", body, now))
    return kept, pushed
