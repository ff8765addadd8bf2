"""``/omni/1/reports`` (each final report once), ``/omni/1/logs`` (history) and ``/omni/1/messages/{id}``."""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from omnirelay.api.errors import ApiProblem, bad_request
from omnirelay.api.params import int_param, list_param, only_params, str_param
from omnirelay.domain import catalogue
from omnirelay.domain.channels import CONTENT_FIELDS, parse_channel
from omnirelay.domain.dates import format_ts, parse_ts
from omnirelay.domain.message import state_decoder
from omnirelay.domain.model import LogEntry, Logs, To
from omnirelay.domain.reports import Tariffs, build_log
from omnirelay.domain.request import request_decoder
from omnirelay.domain.validation import address_for, main_address
from omnirelay.message_detail import message_detail
from omnirelay.store.base import Account, LogQuery, MessageView, Store

_encoder = msgspec.json.Encoder()
_to_decoder = msgspec.json.Decoder(To)

#: The logs' ``generalStatus`` filter: the catalogue's status groups, and ``ACCEPTED`` for PENDING.
GENERAL_STATUS = {"ACCEPTED": catalogue.PENDING_GROUP, **catalogue.STATUS_GROUPS}
LOG_WINDOW_S = 48 * 3600
REPORT_PARAMS = ("bulkId", "messageId", "channel", "limit")
LOG_PARAMS = (
    "from",
    "to",
    "bulkId",
    "messageId",
    "generalStatus",
    "channel",
    "sentSince",
    "sentUntil",
    "limit",
    "mcc",
    "mnc",
)


def _channel_param(request: web.Request) -> str | None:
    raw = request.query.get("channel")
    if not raw:
        return None
    try:
        return parse_channel(raw).value
    except ValueError:
        raise bad_request({"channel": [f"unknown channel {raw!r}"]}) from None


def _date_param(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return parse_ts(raw)
    except ValueError as exc:
        raise bad_request({name: [str(exc)]}) from None


def _digits_param(request: web.Request, name: str, lengths: tuple[int, ...]) -> str | None:
    raw = str_param(request, name)
    if raw is not None and not (raw.isascii() and raw.isdigit() and len(raw) in lengths):
        raise bad_request({name: [f"must be {' or '.join(map(str, lengths))} digits"]})
    return raw


def _json(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="application/json")


class ReportRoutes:
    """Handlers of the report, log and message endpoints."""

    def __init__(self, store: Store, tariffs: Tariffs) -> None:
        self.store = store
        self.tariffs = tariffs

    def add_to(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_get("/omni/1/reports", self.reports)
        app.router.add_get("/omni/1/logs", self.logs)
        app.router.add_get("/omni/1/messages/{messageId}", self.message)

    async def reports(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        only_params(request, *REPORT_PARAMS)
        limit = int_param(request, "limit", 50, 1, 1000)
        bodies = await self.store.take_reports(
            account.id,
            str_param(request, "bulkId"),
            str_param(request, "messageId"),
            _channel_param(request),
            limit,
        )
        return _json(b'{"results":[' + b",".join(bodies) + b"]}")

    async def logs(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        only_params(request, *LOG_PARAMS)
        limit = int_param(request, "limit", 50, 1, 1000)
        status = request.query.get("generalStatus")
        if status and status.upper() not in GENERAL_STATUS:
            raise bad_request({"generalStatus": [f"must be one of {', '.join(GENERAL_STATUS)}"]})
        since = _date_param(request, "sentSince")
        until = _date_param(request, "sentUntil")
        mcc, mnc = _digits_param(request, "mcc", (3,)), _digits_param(request, "mnc", (2, 3))
        query = LogQuery(
            since=since if since is not None else time.time() - LOG_WINDOW_S,
            until=until,
            bulk_ids=tuple(list_param(request, "bulkId")),
            message_ids=tuple(list_param(request, "messageId")),
            status_group=GENERAL_STATUS[status.upper()] if status else None,
            channel=_channel_param(request),
            to=str_param(request, "to"),
            sender=str_param(request, "from"),
            mcc=mcc,
            mnc=mnc,
            limit=limit,
        )
        entries = [self._log_entry(v) for v in await self.store.logs(account.id, query)]
        return _json(_encoder.encode(Logs(entries)))

    def _log_entry(self, view: MessageView) -> LogEntry:
        state = state_decoder.decode(view.state)
        payload = request_decoder.decode(view.payload)
        steps = payload.steps
        index = state.step if 0 <= state.step < len(steps) else 0
        step = steps[index] if steps else None
        channel = state.channel or (step.channel if step else None)
        to = _to_decoder.decode(view.to_json)
        address = (address_for(parse_channel(channel), to) if channel else None) or main_address(to) or ""
        return build_log(
            message_id=view.message_id,
            bulk_id=view.bulk_id,
            address=address,
            sender=step.sender if step else None,
            state=state,
            content=payload.content,
            channel=channel,
            content_field=CONTENT_FIELDS[parse_channel(channel)] if channel else None,
            created_at=view.created_at,
            tariffs=self.tariffs,
        )

    async def message(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        only_params(request)
        view = await self.store.message(account.id, request.match_info["messageId"])
        if view is None:
            raise ApiProblem(404, "Message not found")
        body = message_detail(view, format_ts)
        del body["outcome"]  # the console's; the API answers the status of the log entry (group, name, text) instead
        body["status"] = self._log_entry(view).status
        body["attempts"] = [{k: v for k, v in a.items() if v is not None} for a in body["attempts"]]
        return _json(_encoder.encode({k: v for k, v in body.items() if v is not None}))
