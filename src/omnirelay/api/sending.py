"""``POST /omni/1/advanced`` and the legacy ``POST /omni/1/text``: validate, store durably, then answer."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from aiohttp import web

from omnirelay.api.errors import bad_request, from_msgspec
from omnirelay.api.params import require_json
from omnirelay.domain import catalogue
from omnirelay.domain.catalogue import Status
from omnirelay.domain.ids import uuid7
from omnirelay.domain.message import initial_state
from omnirelay.domain.model import AdvancedRequest, SimpleRequest, Step
from omnirelay.domain.validation import Accepted, Limits, main_address, prepare_send, simple_to_advanced
from omnirelay.store.base import Account, MessageIdConflict, NewMessage, ScenarioRecord, Store


class _SentRaw(msgspec.Struct):
    """:class:`~omnirelay.domain.model.SentMessage` with ``to`` passed through as stored."""

    to: msgspec.Raw
    status: Status
    messageId: str


class _ResponseRaw(msgspec.Struct, omit_defaults=True):
    messages: list[_SentRaw]
    bulkId: str | None = None


_advanced = msgspec.json.Decoder(AdvancedRequest)
_simple = msgspec.json.Decoder(SimpleRequest)
_encoder = msgspec.json.Encoder()


class SendRoutes:
    """Handlers of the send endpoints."""

    def __init__(self, store: Store, limits: Limits, accepted: Callable[[], None]) -> None:
        self.store = store
        self.limits = limits
        self.accepted = accepted
        """Called after messages were stored (wakes the engine)."""

    def add_to(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_post("/omni/1/advanced", self.advanced)
        app.router.add_post("/omni/1/text", self.text)

    async def advanced(self, request: web.Request) -> web.Response:
        require_json(request)
        try:
            body = _advanced.decode(await request.read())
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise from_msgspec(exc) from None
        account: Account = request["account"]
        scenario = await self._scenario(account, body.scenarioKey)
        return await self._send(account, body, scenario.flow)

    async def text(self, request: web.Request) -> web.Response:
        require_json(request)
        try:
            simple = _simple.decode(await request.read())
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise from_msgspec(exc) from None
        if not simple.text:
            raise bad_request({"text": ["is required"]})
        account: Account = request["account"]
        scenario = await self._scenario(account, simple.scenarioKey)
        return await self._send(account, simple_to_advanced(simple, scenario.flow), scenario.flow)

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

    async def _send(self, account: Account, body: AdvancedRequest, flow: list[Step]) -> web.Response:
        now = time.time()
        plan = prepare_send(body, flow, now, self.limits)
        if not isinstance(plan, Accepted):
            raise bad_request(plan)
        bulk_id = plan.bulk_id
        if bulk_id is None and len(plan.destinations) > 1:
            bulk_id = uuid7()
        state = initial_state(now, plan.send_at)
        messages = [
            NewMessage(
                d.message_id or uuid7(), d.to_json, d.content_hash, state, d.message_id is not None, main_address(d.to)
            )
            for d in plan.destinations
        ]
        try:
            stored = await self.store.accept(account.id, plan.payload, bulk_id, messages, plan.send_at or now, now)
        except MessageIdConflict as exc:
            raise bad_request(
                {f"destinations[{exc.index}].messageId": ["is already used by another message with different content"]}
            ) from None
        self.accepted()
        # the bulk id new messages got; for a request replayed whole, the one it was first stored under
        stored_bulks = [s.bulk_id for s in stored if s.bulk_id]
        answer_bulk = plan.bulk_id or (bulk_id if bulk_id in stored_bulks else next(iter(stored_bulks), None))
        status = catalogue.PENDING_ENROUTE
        response = _ResponseRaw(
            messages=[_SentRaw(msgspec.Raw(s.to_json), status, s.message_id) for s in stored],
            bulkId=answer_bulk if (plan.bulk_id or len(stored) > 1) else None,
        )
        return web.Response(body=_encoder.encode(response), content_type="application/json")
