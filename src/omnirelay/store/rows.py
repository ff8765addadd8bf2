"""Row mapping and checks shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from omnirelay.domain import rollups
from omnirelay.domain.catalogue import REJECTED_GROUP
from omnirelay.domain.delivery import Receipt
from omnirelay.domain.failover import Reported
from omnirelay.domain.lifecycle import JobKind, Outcome
from omnirelay.domain.message import state_decoder
from omnirelay.domain.model import Step
from omnirelay.store.base import Account, NewMessage, ScenarioRecord, Stored

WORK_COLS = "m.id, m.account_id, m.message_id, m.bulk_id, m.to_json, m.created_at, m.state, m.request_id, r.payload"
#: How long rollup rows are kept, by span: minute rows serve ranges of a few hours, hour rows a year of history.
#: Both outlive the messages they count (the retention purge removes messages only): the overview of last week
#: stays right after the week's messages are gone.
ROLLUP_KEEP_S = {60: 3 * 86400, 3600: 400 * 86400}
VIEW_COLS = "m.message_id, m.bulk_id, m.to_json, m.created_at, m.state, r.payload"

_flow_decoder = msgspec.json.Decoder(list[Step])


def account_from_row(row: Sequence[Any]) -> Account:
    """An :class:`Account` from a row starting (id, username, password_hash, webhook_secret, source)."""
    return Account(id=row[0], username=row[1], password_hash=row[2], webhook_secret=row[3], source=row[4])


def scenario_from_row(row: Sequence[Any]) -> ScenarioRecord:
    """A :class:`ScenarioRecord` from a row (key, name, flow, is_default)."""
    return ScenarioRecord(key=row[0], name=row[1], flow=_flow_decoder.decode(row[2]), default=bool(row[3]))


@dataclass
class AcceptItem:
    """One request's messages waiting for the next group commit."""

    account_id: int
    payload: bytes
    bulk_id: str | None
    messages: list[NewMessage]
    start_at: float
    now: float


@dataclass
class AcceptPlan:
    """What a group commit of accepts writes, and what each request is answered."""

    outcomes: list[list[Stored | None]]
    """Per request: the replayed answers and duplicates (None where a new message is stored; an empty list when
    nothing is replayed)."""
    fresh: list[tuple[int, list[NewMessage]]] = field(default_factory=list)
    """(request index, its messages to insert, in order) of every request that stores at least one message (each
    gets a ``requests`` row)."""

    def answers(self, items: list[AcceptItem]) -> list[list[Stored]]:
        """Per request, once committed: the answer for each destination."""
        result: list[list[Stored]] = []
        for item, outcome in zip(items, self.outcomes, strict=True):
            bulk_id = item.bulk_id
            if outcome:
                result.append(
                    [
                        a if a is not None else Stored(m.message_id, m.to_json, bulk_id)
                        for m, a in zip(item.messages, outcome, strict=True)
                    ]
                )
            else:  # nothing replayed: every message is new
                result.append([Stored(m.message_id, m.to_json, bulk_id) for m in item.messages])
        return result


def plan_accepts(
    items: list[AcceptItem], existing: dict[tuple[int, str], tuple[bytes, bytes, str | None]]
) -> AcceptPlan:
    """Decide a group commit: replays answer from what is stored, a client message id taken with other content
    is a duplicate of its own destination only, and a client message id used twice within the batch counts as
    stored by the first request that used it."""
    plan = AcceptPlan(outcomes=[])
    by_account: dict[int, dict[str, tuple[bytes, bytes, str | None]]] = {}
    for (account, mid), found in existing.items():
        by_account.setdefault(account, {})[mid] = found
    for index, item in enumerate(items):
        supplied = [m for m in item.messages if m.supplied]
        if not supplied:  # the usual request: nothing to replay, every message is new
            plan.outcomes.append([])
            if item.messages:
                plan.fresh.append((index, item.messages))
            continue
        mine = by_account.setdefault(item.account_id, {})
        answers = replayed(item.messages, mine)
        plan.outcomes.append(answers)
        fresh = [m for m, a in zip(item.messages, answers, strict=True) if a is None]
        if fresh:
            plan.fresh.append((index, fresh))
        for m in fresh:
            if m.supplied:
                mine[m.message_id] = (m.content_hash, m.to_json, item.bulk_id)
    return plan


def supplied_ids(items: list[AcceptItem]) -> list[tuple[int, str]]:
    """(account, message id) of every client-supplied message id in a batch."""
    return [(item.account_id, m.message_id) for item in items for m in item.messages if m.supplied]


def replayed(
    messages: list[NewMessage], existing: Mapping[str, tuple[bytes, bytes, str | None]]
) -> list[Stored | None]:
    """For each message whose client-supplied id is already taken, what it is answered: the stored answer when
    the content is the same, a duplicate (nothing stored) when it differs; None for a message to store.

    ``existing`` maps a message id to (content hash, to_json, bulk id) of the stored message.
    """
    answers: list[Stored | None] = [None] * len(messages)
    for i, m in enumerate(messages):
        found = existing.get(m.message_id) if m.supplied else None
        if found is None:
            continue
        content_hash, to_json, bulk_id = found
        if bytes(content_hash) != m.content_hash:
            answers[i] = Stored(m.message_id, m.to_json, None, duplicate=True)
        else:
            answers[i] = Stored(m.message_id, bytes(to_json), bulk_id)
    return answers


# --- receipts and rate buckets ---------------------------------------------------------------------


class _HeldReceipt(msgspec.Struct):
    outcome: Outcome
    error: str | None
    not_a_user: bool
    detail: str | None
    after_s: float


_held_encoder = msgspec.json.Encoder()
_held_decoder = msgspec.json.Decoder(_HeldReceipt)


def receipt_data(receipt: Receipt) -> bytes:
    """What is kept of a receipt until its step is known."""
    r = receipt
    return _held_encoder.encode(_HeldReceipt(r.outcome, r.error, r.not_a_user, r.detail, r.after_s))


def receipt_job(message: int, step: int, data: bytes, now: float) -> tuple[int, str, int, float, bytes]:
    """The engine job a receipt becomes once its step is known: (message, kind, step, due_at, event)."""
    held = _held_decoder.decode(data)
    event = Reported(step, held.outcome, held.error, held.not_a_user, held.detail)
    return (message, JobKind.REPORT, step, now + max(0.0, held.after_s), _held_encoder.encode(event))


def take_tokens(
    bucket: tuple[float, float] | None, want: int, rate: float, burst: float, now: float
) -> tuple[int, float]:
    """A token bucket's answer: how many of ``want`` tokens it grants, and the tokens left. ``bucket`` is the stored
    (tokens, updated) or None for a full new bucket."""
    tokens = burst if bucket is None else min(burst, bucket[0] + max(0.0, now - bucket[1]) * rate)
    granted = max(0, min(want, int(tokens + 1e-3)))  # float time: 0.1 s at 100/s is 10 tokens, not 9.9999
    return granted, tokens - granted


def accept_rollup(item: AcceptItem, fresh: list[NewMessage]) -> list[rollups.Row]:
    """What a request's stored messages add to the rollups: each is accepted; one refused at acceptance is also
    final at once (status group REJECTED, nothing sent, nothing charged)."""
    rows = [rollups.accepted(item.account_id, item.now, len(fresh))]
    for m in fresh:
        if m.rejected:
            rows += rollups.finished(item.account_id, item.now, state_decoder.decode(m.state), REJECTED_GROUP, 0.0)
    return rows
