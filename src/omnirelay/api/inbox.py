"""``GET /sms/1/inbox/reports``: the account's inbound SMS, each returned once (Infobip's SMS API pull).

Messages received in the last 48 hours, oldest first, at most ``limit`` (default 50, at most 1000) a call;
``pendingMessageCount`` says how many are left for the next call. A message is pulled once whether or not it
was also pushed to the account's ``inbound_url``.
"""

from __future__ import annotations

import time

from aiohttp import web

from omnirelay.api.params import int_param, only_params
from omnirelay.domain.inbound import inbox_body
from omnirelay.store.base import Account, Store
from omnirelay.store.inbound import RETENTION_S

INBOX_PARAMS = ("limit",)


class InboxRoutes:
    """Handler of the inbound SMS pull."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_to(self, app: web.Application) -> None:
        """Register the route."""
        app.router.add_get("/sms/1/inbox/reports", self.inbox)

    async def inbox(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        only_params(request, *INBOX_PARAMS)
        limit = int_param(request, "limit", 50, 1, 1000)
        results, pending = await self.store.take_inbound(account.id, limit, time.time() - RETENTION_S)
        return web.Response(body=inbox_body(results, pending), content_type="application/json")
