"""``POST /omni/1/advanced`` and the legacy ``POST /omni/1/text``: validate, store durably, then answer."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Mapping

import msgspec
from aiohttp import web

from omnirelay.api.errors import bad_request
from omnirelay.api.params import read_json
from omnirelay.domain import catalogue
from omnirelay.domain.ids import uuid7, uuid7s
from omnirelay.domain.message import initial_state, rejected_state
from omnirelay.domain.model import AdvancedRequest, SimpleRequest, Step
from omnirelay.domain.reports import Tariffs, log_columns
from omnirelay.domain.validation import (
    DUPLICATE_ID,
    Accepted,
    AcceptedDestination,
    Limits,
    prepare_send,
    simple_to_advanced,
)
from omnirelay.store.base import Account, NewMessage, ScenarioRecord, Store, Stored

#: The status every accepted message answers with.
_PENDING = msgspec.Raw(msgspec.json.encode(catalogue.PENDING_ENROUTE))


@functools.cache
def _status(name: str) -> msgspec.Raw:
    """A refused destination's status, encoded once."""
    return msgspec.Raw(msgspec.json.encode(catalogue.status(name)))


#: The status of a destination whose client message id names another message.
_DUPLICATE = _status(DUPLICATE_ID[0])


class _Sent(msgspec.Struct, gc=False):
    """:class:`~omnirelay.domain.model.SentMessage` with its parts already encoded: the stored ``to`` is sent as is."""

    to: msgspec.Raw
    status: msgspec.Raw
    messageId: str


class _Answer(msgspec.Struct, omit_defaults=True):
    """:class:`~omnirelay.domain.model.SendResponse` of :class:`_Sent` messages."""

    messages: list[_Sent]
    bulkId: str | None = None


_advanced = msgspec.json.Decoder(AdvancedRequest)
_simple = msgspec.json.Decoder(SimpleRequest)
_encoder = msgspec.json.Encoder()


class SendRoutes:
    """Handlers of the send endpoints."""

    def __init__(
        self,
        store: Store,
        limits: Limits,
        accepted: Callable[[int], None],
        tariffs: Tariffs,
        notify_urls: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.tariffs = tariffs
        """Networks of numbers, for the logs' filter columns."""
        self.limits = limits
        self.accepted = accepted
        """Called with the number of messages newly stored (wakes the engine, counts them)."""
        self.notify_urls = notify_urls or {}
        """Each account's own report URL (by username), for requests that name none."""

    def add_to(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_post("/omni/1/advanced", self.advanced)
        app.router.add_post("/omni/1/text", self.text)

    async def advanced(self, request: web.Request) -> web.Response:
        body = await read_json(request, _advanced)
        account: Account = request["account"]
        scenario = await self._scenario(account, body.scenarioKey)
        return await self._send(account, body, scenario.flow)

    async def text(self, request: web.Request) -> web.Response:
        simple = await read_json(request, _simple)
        if not simple.text:
            raise bad_request({"text": ["is required"]})
        account: Account = request["account"]
        scenario = await self._scenario(account, simple.scenarioKey)
        return await self._send(account, simple_to_advanced(simple, scenario.flow), scenario.flow, simple=True)

    async def _scenario(self, account: Account, key: str | None) -> ScenarioRecord:
        if key:
            scenario = await self.store.scenario(account.id, key)
            if scenario is None:
                raise bad_request({"scenarioKey": ["no scenario with this key"]})
        else:
            scenario = await self.store.default_scenario(account.id)
            if scenario is None:
                raise bad_request({"scenarioKey": ["is required: the account has no default scenario"]})
        return scenario

    def _with_log_columns(self, plan: Accepted, d: AcceptedDestination, m: NewMessage) -> NewMessage:
        """``m`` with the logs' filter columns, as its entry shows the first step: for messages the engine does not
        take up at once (scheduled or refused ones). The others get them from the engine's first decision: here
        they would cost the accept path two index entries and a network look-up a destination (~20 % of
        1,000-destination requests, measured)."""
        first = plan.steps[0]  # a scenario has a step at least
        return dataclasses.replace(m, **log_columns(first.channel, first.sender, d.to, self.tariffs)._asdict())

    async def _send(
        self, account: Account, body: AdvancedRequest, flow: list[Step], simple: bool = False
    ) -> web.Response:
        now = time.time()
        plan = prepare_send(body, flow, now, self.limits)
        if not isinstance(plan, Accepted):
            if simple:  # the legacy request's one text is what each channel's ``text`` complains about
                plan = {("text" if k.endswith(".text") else k): v for k, v in plan.items()}
            raise bad_request(plan)
        payload = plan.payload
        account_url = self.notify_urls.get(account.username)
        if account_url is not None and "notifyUrl" not in plan.options and plan.options.get("notify") is not False:
            # Resolved now, so the report goes where the settings said when the message was accepted, whichever
            # worker makes it; the request's content hash (replays) is that of what the client sent.
            options = {**plan.options, "notifyUrl": account_url}
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
            stored = await self.store.accept(account.id, payload, bulk_id, messages, plan.send_at or now, now)
            sent = [
                _Sent(msgspec.Raw(s.to_json), _DUPLICATE if s.duplicate else _PENDING, s.message_id) for s in stored
            ]
            taken = len(sent) - sum(1 for s in stored if s.duplicate)
        else:
            stored, sent, taken = await self._send_with_rejections(
                account, plan, payload, bulk_id, state, fresh_ids, now
            )
        self.accepted(taken)
        # the bulk id new messages got; for a request replayed whole, the one it was first stored under
        answer_bulk = plan.bulk_id
        if answer_bulk is None:
            if bulk_id is not None and any(s.bulk_id == bulk_id for s in stored):
                answer_bulk = bulk_id
            else:
                answer_bulk = next((s.bulk_id for s in stored if s.bulk_id), None)
        answer = _Answer(sent)
        if answer_bulk is not None and (plan.bulk_id or len(sent) > 1):
            answer.bulkId = answer_bulk
        return web.Response(body=_encoder.encode(answer), content_type="application/json")

    async def _send_with_rejections(
        self,
        account: Account,
        plan: Accepted,
        payload: bytes,
        bulk_id: str | None,
        state: bytes,
        fresh_ids: Iterator[str],
        now: float,
    ) -> tuple[list[Stored], list[_Sent], int]:
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
        stored = await self.store.accept(account.id, payload, bulk_id, messages, plan.send_at or now, now)
        answers: list[Stored | None] = [None] * len(plan.destinations)
        for i, one in zip(stored_at, stored, strict=True):
            answers[i] = one
        sent: list[_Sent] = []
        taken = 0
        for d, s in zip(plan.destinations, answers, strict=True):
            if s is None:  # a duplicate within the request
                sent.append(_Sent(msgspec.Raw(d.to_json), _DUPLICATE, d.message_id or ""))
            elif s.duplicate:
                sent.append(_Sent(msgspec.Raw(s.to_json), _DUPLICATE, s.message_id))
            elif d.rejected is not None:
                sent.append(_Sent(msgspec.Raw(s.to_json), _status(d.rejected.status), s.message_id))
            else:
                taken += 1
                sent.append(_Sent(msgspec.Raw(s.to_json), _PENDING, s.message_id))
        return stored, sent, taken
