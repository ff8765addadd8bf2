"""The one accept path: validate a send request, plan its messages, store them durably (one group commit), and
say what each destination is answered. ``POST /omni/1/advanced``, ``POST /omni/1/text`` (:mod:`omnirelay.api.sending`)
and the console's "try in the sandbox" send through it.

It is the hot path of the API: nothing here awaits anything but the store's one ``accept``, and each destination
is planned, stored and answered without a copy of its parts (the stored ``to`` is answered as it is).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import NamedTuple

import msgspec

from omnirelay.domain import catalogue
from omnirelay.domain.ids import uuid7, uuid7s
from omnirelay.domain.message import initial_state, rejected_state
from omnirelay.domain.model import AdvancedRequest, Step
from omnirelay.domain.reports import Tariffs, log_columns
from omnirelay.domain.validation import (
    DUPLICATE_ID,
    Accepted,
    AcceptedDestination,
    Errors,
    Limits,
    prepare_send,
)
from omnirelay.store.base import NewMessage, Store, Stored

#: The status every accepted message answers with.
_PENDING = msgspec.Raw(msgspec.json.encode(catalogue.PENDING_ENROUTE))


@functools.cache
def _status(name: str) -> msgspec.Raw:
    """A refused destination's status, encoded once."""
    return msgspec.Raw(msgspec.json.encode(catalogue.status(name)))


#: The status of a destination whose client message id names another message.
_DUPLICATE = _status(DUPLICATE_ID[0])

_encoder = msgspec.json.Encoder()


class ReplyMessage(msgspec.Struct, gc=False):
    """:class:`~omnirelay.domain.model.SentMessage` with its parts already encoded: the stored ``to`` is sent as is."""

    to: msgspec.Raw
    status: msgspec.Raw
    messageId: str


class Reply(msgspec.Struct, omit_defaults=True):
    """:class:`~omnirelay.domain.model.SendResponse` of :class:`ReplyMessage` messages: the send endpoints' answer."""

    messages: list[ReplyMessage]
    bulkId: str | None = None


class Sent(NamedTuple):
    """What a stored request is answered, and how many of its messages were newly stored to be sent."""

    reply: Reply
    taken: int


class Sender:
    """Validate → plan → store, for every caller that sends."""

    def __init__(self, store: Store, limits: Limits, tariffs: Tariffs) -> None:
        self.store = store
        self.limits = limits
        self.tariffs = tariffs
        """Networks of numbers, for the logs' filter columns."""

    def plan(self, body: AdvancedRequest, flow: list[Step], now: float) -> Errors | Accepted:
        """Validate ``body`` for the scenario's ``flow``: the errors of its fields, or the messages to store."""
        return prepare_send(body, flow, now, self.limits)

    async def accept(self, account_id: int, plan: Accepted, now: float, notify_url: str | None = None) -> Sent:
        """Store the messages of ``plan`` (with ``now`` the time :meth:`plan` was given) in one transaction with
        their first due jobs, and say what each destination is answered. ``notify_url``: the account's own
        report URL, for a request that names none and does not turn reports off."""
        payload = plan.payload
        if notify_url is not None and "notifyUrl" not in plan.options and plan.options.get("notify") is not False:
            # Resolved now, so the report goes where the settings said when the message was accepted, whichever
            # worker makes it; the request's content hash (replays) is that of what the client sent.
            options = {**plan.options, "notifyUrl": notify_url}
            payload = _encoder.encode({"steps": plan.steps, "content": plan.content, "options": options})
        bulk_id = plan.bulk_id
        if bulk_id is None and len(plan.destinations) > 1:
            bulk_id = uuid7()
        state = initial_state(now, plan.send_at)
        fresh_ids = iter(uuid7s(plan.fresh))
        if not plan.rejected:  # the usual request: every destination is stored and answered in order
            messages = [
                NewMessage(
                    d.message_id or next(fresh_ids),
                    d.to_json,
                    d.content_hash,
                    state,
                    d.message_id is not None,
                    d.address,
                )
                for d in plan.destinations
            ]
            if plan.send_at is not None:
                pairs = zip(plan.destinations, messages, strict=True)
                messages = [self._with_log_columns(plan, d, m) for d, m in pairs]
            stored = await self.store.accept(account_id, payload, bulk_id, messages, plan.send_at or now, now)
            sent = [
                ReplyMessage(msgspec.Raw(s.to_json), _DUPLICATE if s.duplicate else _PENDING, s.message_id)
                for s in stored
            ]
            taken = len(sent) - sum(1 for s in stored if s.duplicate)
        else:
            stored, sent, taken = await self._accept_with_rejections(
                account_id, plan, payload, bulk_id, state, fresh_ids, now
            )
        # the bulk id new messages got; for a request replayed whole, the one it was first stored under
        answer_bulk = plan.bulk_id
        if answer_bulk is None:
            if bulk_id is not None and any(s.bulk_id == bulk_id for s in stored):
                answer_bulk = bulk_id
            else:
                answer_bulk = next((s.bulk_id for s in stored if s.bulk_id), None)
        reply = Reply(sent)
        if answer_bulk is not None and (plan.bulk_id or len(sent) > 1):
            reply.bulkId = answer_bulk
        return Sent(reply, taken)

    def _with_log_columns(self, plan: Accepted, d: AcceptedDestination, m: NewMessage) -> NewMessage:
        """``m`` with the logs' filter columns, as its entry shows the first step: for messages the engine does not
        take up at once (scheduled or refused ones). The others get them from the engine's first decision: here
        they would cost the accept path two index entries and a network look-up a destination (~20 % of
        1,000-destination requests, measured)."""
        first = plan.steps[0]  # a scenario has a step at least
        return dataclasses.replace(m, **log_columns(first.channel, first.sender, d.to, self.tariffs)._asdict())

    async def _accept_with_rejections(
        self,
        account_id: int,
        plan: Accepted,
        payload: bytes,
        bulk_id: str | None,
        state: bytes,
        fresh_ids: Iterator[str],
        now: float,
    ) -> tuple[list[Stored], list[ReplyMessage], int]:
        """Store a request of which some destinations are refused; what was stored, the answer, how many are sent."""
        # a destination whose message id an earlier one of this request took is answered, never stored
        stored_at: list[int] = []
        messages: list[NewMessage] = []
        for i, d in enumerate(plan.destinations):
            if d.duplicate:
                continue
            r = d.rejected
            stored_at.append(i)
            m = NewMessage(
                d.message_id or next(fresh_ids),
                d.to_json,
                d.content_hash,
                state if r is None else rejected_state(now, r.status, r.error, r.reason),
                d.message_id is not None,
                d.address,
                r is not None,
            )
            messages.append(m if r is None and plan.send_at is None else self._with_log_columns(plan, d, m))
        stored = await self.store.accept(account_id, payload, bulk_id, messages, plan.send_at or now, now)
        answers: list[Stored | None] = [None] * len(plan.destinations)
        for i, one in zip(stored_at, stored, strict=True):
            answers[i] = one
        sent: list[ReplyMessage] = []
        taken = 0
        for d, s in zip(plan.destinations, answers, strict=True):
            if s is None:  # a duplicate within the request
                sent.append(ReplyMessage(msgspec.Raw(d.to_json), _DUPLICATE, d.message_id or ""))
            elif s.duplicate:
                sent.append(ReplyMessage(msgspec.Raw(s.to_json), _DUPLICATE, s.message_id))
            elif d.rejected is not None:
                sent.append(ReplyMessage(msgspec.Raw(s.to_json), _status(d.rejected.status), s.message_id))
            else:
                taken += 1
                sent.append(ReplyMessage(msgspec.Raw(s.to_json), _PENDING, s.message_id))
        return stored, sent, taken
