"""How an answer is written for the client that asked: in XML when its ``Accept`` prefers XML, and errors in
a form the old official Python client can parse. One middleware for both keeps the hot path one call shorter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from omnirelay.api.errors import rewrite_for_legacy_client
from omnirelay.api.xml import rewrite_as_xml

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answer_middleware() -> web.middleware:  # type: ignore[valid-type]
    """Rewrite each answer for its client (see the module)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        rewrite_for_legacy_client(request, response)  # first: it reads the JSON envelope
        rewrite_as_xml(request, response)
        return response

    return middleware
