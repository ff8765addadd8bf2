"""``POST /omni/1/advanced`` and the legacy ``POST /omni/1/text``: read the request, find its scenario, send it
through :class:`omnirelay.sending.Sender` (validate, store durably), then answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import msgspec
from aiohttp import web

from omnirelay.api.errors import bad_request
from omnirelay.api.params import read_json
from omnirelay.domain.model import AdvancedRequest, SimpleRequest, Step
from omnirelay.domain.validation import Accepted, simple_to_advanced
from omnirelay.sending import Sender, Sent
from omnirelay.store.base import Account, ScenarioRecord

_advanced = msgspec.json.Decoder(AdvancedRequest)
_simple = msgspec.json.Decoder(SimpleRequest)
_encoder = msgspec.json.Encoder()


class SendRoutes:
    """Handlers of the send endpoints."""

    def __init__(
        self,
        sender: Sender,
        accepted: Callable[[int], None],
        notify_urls: Mapping[str, str] | None = None,
    ) -> None:
        self.sender = sender
        self.store = sender.store
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
        now = time.time()
        plan = self._plan(body, scenario.flow, now)
        return self._answer(await self.sender.accept(account.id, plan, now, self.notify_urls.get(account.username)))

    async def text(self, request: web.Request) -> web.Response:
        simple = await read_json(request, _simple)
        if not simple.text:
            raise bad_request({"text": ["is required"]})
        account: Account = request["account"]
        scenario = await self._scenario(account, simple.scenarioKey)
        now = time.time()
        plan = self._plan(simple_to_advanced(simple, scenario.flow), scenario.flow, now, simple=True)
        return self._answer(await self.sender.accept(account.id, plan, now, self.notify_urls.get(account.username)))

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

    def _plan(self, body: AdvancedRequest, flow: list[Step], now: float, simple: bool = False) -> Accepted:
        """The request's plan, or its errors raised as a 400 answer."""
        plan = self.sender.plan(body, flow, now)
        if not isinstance(plan, Accepted):
            if simple:  # the legacy request's one text is what each channel's ``text`` complains about
                plan = {("text" if k.endswith(".text") else k): v for k, v in plan.items()}
            raise bad_request(plan)
        return plan

    def _answer(self, sent: Sent) -> web.Response:
        self.accepted(sent.taken)
        return web.Response(body=_encoder.encode(sent.reply), content_type="application/json")
