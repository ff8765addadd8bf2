"""The HTTP connection layer under the application: aiohttp's connection handler, made to answer what its parser
refuses in Infobip's envelope, to close connections that do not deliver a request head in time (slow-loris),
and to hold at most so many connections per client address."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from omnirelay.api.errors import envelope

log = logging.getLogger("omnirelay.api")


@dataclass(frozen=True)
class ConnectionLimits:
    """Limits on each client connection."""

    header_timeout_s: float = 10.0
    """From a connection's opening, or from the first byte of its next request, until that request's head (request
    line and headers) is complete; a connection that is slower is answered 408 and closed."""
    keepalive_s: float = 75.0
    """How long an idle connection is kept open between requests."""
    per_client: int = 256
    """Connections open at once from one client address; 0: no limit."""


class _Handler(RequestHandler):
    """One client connection."""

    def __init__(self, manager: Server, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._client: str | None = None

    # --- per-client limit and the head timer ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else None
        server = self._server
        if client is not None and server is not None:
            self._client = client
            server.clients[client] += 1
            if 0 < self._limits.per_client < server.clients[client]:
                log.info("connection from %s refused: %d open already", client, server.clients[client] - 1)
                self._refuse(429, "TOO_MANY_REQUESTS", "Too many connections from this address")
                return
        self._start_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        server = self._server
        if self._client is not None and server is not None:
            server.clients[self._client] -= 1
            if server.clients[self._client] <= 0:
                del server.clients[self._client]
            self._client = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and self._head_timer is None and self._waiting_for_request():
            self._start_head_timer()  # the first byte of the next request on a kept-alive connection
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._stop_head_timer()  # a request head is complete

    def _waiting_for_request(self) -> bool:
        """Whether the connection waits for a request (not busy with one, its body included)."""
        return self._waiter is not None and not self._waiter.done()

    @property
    def _server(self) -> Server | None:
        manager = self._manager
        return manager if isinstance(manager, Server) else None

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        if self._limits.header_timeout_s > 0:
            self._head_timer = self._loop.call_later(self._limits.header_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is None or self._messages or not self._waiting_for_request():
            return
        log.info("connection from %s closed: no complete request head within %ss", self._client,
                 self._limits.header_timeout_s)
        self._refuse(408, "REQUEST_TIMEOUT", "The request head did not arrive in time")

    def _refuse(self, status: int, message_id: str, text: str) -> None:
        """Answer ``status`` in the envelope outside any request, then close."""
        if self.transport is not None:
            body = envelope(status, text, message_id=message_id).body
            assert isinstance(body, bytes)
            reason = {408: "Request Timeout", 429: "Too Many Requests"}.get(status, "Error")
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
        self.force_close()

    # --- what the parser refuses -----------------------------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer aiohttp gives by itself (a request it cannot parse, a handler that failed), in the
        envelope; a client's malformed request is logged in one line, without a traceback."""
        if status >= 500:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.info("bad HTTP request from %s: %s", request.remote, message or exc)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was partly sent already: the connection is closed instead")
        text = f"Bad HTTP request: {message}" if status == 400 and message else None
        response = envelope(status, text)
        response.force_close()
        return response


class Server(web.Server):
    """aiohttp's server, making :class:`_Handler` connections and counting them by client address."""

    def __init__(self, base: web.Server, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            keepalive_timeout=limits.keepalive_s,
            **kwargs,
        )
        self.limits = limits
        self.clients: Counter[str] = Counter()

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, limits=self.limits, **self._kwargs)


class Runner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections follow :class:`ConnectionLimits`."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._handler_kwargs = {k: v for k, v in kwargs.items() if k in ("access_log", "access_log_class")}

    async def _make_server(self) -> web.Server:
        return Server(await super()._make_server(), self._limits, **self._handler_kwargs)
