"""``/omni/1/scenarios``: create, list, read, replace and delete an account's failover scenarios."""

from __future__ import annotations

import msgspec
from aiohttp import web

from omnirelay.api.errors import ApiProblem, bad_request
from omnirelay.api.params import bool_param, int_param, only_params, read_json
from omnirelay.domain.ids import scenario_key
from omnirelay.domain.model import Scenario, ScenarioIn, ScenarioList
from omnirelay.domain.validation import validate_scenario
from omnirelay.store.base import Account, ScenarioRecord, Store

_decoder = msgspec.json.Decoder(ScenarioIn)
_encoder = msgspec.json.Encoder()

NOT_FOUND = "Scenario not found"


def _json(body: object) -> web.Response:
    return web.Response(body=_encoder.encode(body), content_type="application/json")


def _out(record: ScenarioRecord) -> Scenario:
    return Scenario(
        key=record.key, name=record.name, flow=record.flow, default=record.default, defaultScenario=record.default
    )


async def _read(request: web.Request) -> ScenarioIn:
    return await read_json(request, _decoder)


def _record(key: str, body: ScenarioIn, current: ScenarioRecord | None) -> ScenarioRecord:
    errors, flow = validate_scenario(body)
    if errors:
        raise bad_request(errors)
    default = body.default if body.default is not None else body.defaultScenario
    if default is None:
        default = current.default if current is not None else False
    name = body.name if body.name else "-".join(step.channel for step in flow)
    return ScenarioRecord(key=key, name=name, flow=flow, default=default)


class ScenarioRoutes:
    """Handlers of the scenario endpoints."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_to(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_post("/omni/1/scenarios", self.create)
        app.router.add_get("/omni/1/scenarios", self.list)
        app.router.add_get("/omni/1/scenarios/{key}", self.get)
        app.router.add_put("/omni/1/scenarios/{key}", self.replace)
        app.router.add_delete("/omni/1/scenarios/{key}", self.delete)

    async def create(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        record = _record(scenario_key(), await _read(request), None)
        await self.store.create_scenario(account.id, record)
        return _json(_out(record))

    async def list(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        only_params(request, "isDefault", "default", "limit", "page")
        is_default = bool_param(request, "isDefault", "default")
        limit = int_param(request, "limit", 100, 0, 1000)
        page = int_param(request, "page", 0, 0, 1_000_000_000)
        records = await self.store.scenarios(account.id, is_default, limit, page)
        return _json(ScenarioList([_out(r) for r in records]))

    async def get(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        only_params(request)
        record = await self.store.scenario(account.id, request.match_info["key"])
        if record is None:
            raise ApiProblem(404, NOT_FOUND)
        return _json(_out(record))

    async def replace(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        key = request.match_info["key"]
        current = await self.store.scenario(account.id, key)
        if current is None:
            raise ApiProblem(404, NOT_FOUND)
        record = _record(key, await _read(request), current)
        if not await self.store.update_scenario(account.id, record):
            raise ApiProblem(404, NOT_FOUND)
        return _json(_out(record))

    async def delete(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        if not await self.store.delete_scenario(account.id, request.match_info["key"]):
            raise ApiProblem(404, NOT_FOUND)
        return web.Response(status=204)
