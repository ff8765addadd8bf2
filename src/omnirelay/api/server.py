"""The aiohttp application: middlewares for auth and the error envelope, and every route."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from omnirelay.api.auth import Authenticator
from omnirelay.api.errors import ApiProblem, envelope
from omnirelay.api.params import check_url_text
from omnirelay.metrics import Metrics
from omnirelay.store.errors import UNAVAILABLE

log = logging.getLogger("omnirelay.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Paths that need no API credentials (the console checks its own session cookie, ``/auth/1/`` its credentials).
PUBLIC_PREFIXES = (
    "/openapi.json", "/health", "/readyz", "/metrics", "/webhooks/", "/console", "/auth/1/", "/favicon.ico"
)


def error_middleware() -> web.middleware:  # type: ignore[valid-type]
    """Answer every failure in Infobip's envelope; an unexpected one is logged and becomes a 500."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            check_url_text(request)
            return await handler(request)
        except ApiProblem as problem:
            return problem.response()
        except (RequestPayloadError, HttpProcessingError) as exc:  # the body broke off or is malformed
            log.info("bad HTTP request body from %s: %s", request.remote, exc)
            return envelope(400, f"Bad HTTP request body: {exc}")
        except web.HTTPRequestEntityTooLarge as exc:
            return envelope(413, f"Request body too large: {exc.text}")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = envelope(exc.status, exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except UNAVAILABLE as exc:  # one line, no traceback: an outage would flood the log
            log.warning("database unavailable during %s %s: %r", request.method, request.path, exc)
            return envelope(503)
        except Exception:
            log.exception("unexpected error during %s %s", request.method, request.path)
            return envelope(500)

    return middleware


def auth_middleware(auth: Authenticator) -> web.middleware:  # type: ignore[valid-type]
    """Every ``/omni/`` request needs valid credentials; the account goes to ``request["account"]``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        account = await auth.account(request.headers.get("Authorization"))
        if account is None:
            return envelope(401)
        request["account"] = account
        return await handler(request)

    return middleware


def metrics_middleware(metrics: Metrics) -> web.middleware:  # type: ignore[valid-type]
    """Count every request by route and status, with its latency."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            metrics.of(metrics.requests, request.method, route, str(status)).observe(time.perf_counter() - started)

    return middleware
