"""Rate limits per account and endpoint, answered as Infobip does: 429 ``TOO_MANY_REQUESTS`` with ``Retry-After``.

Each limit is a token bucket in the store (:meth:`~omnirelay.store.base.Store.take_tokens`), so every API process on
one database spends the same budget. A process takes its tokens in leases (see :attr:`Limit.lease`) and spends them
locally; requests that find the lease empty wait together for one refill. So the accept path makes one database
round trip per lease, not per request, and a burst can pass a limit by at most one lease per process.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from omnirelay.api.errors import envelope
from omnirelay.store.base import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Infobip's documented limits (the OpenAPI document's ``x-throttling-info``; the logs' "120 per 0 m" read as per
#: minute), plus a generous one for sending, which Infobip does not document; ``[rate_limits]`` overrides any.
DEFAULTS = {
    "POST /omni/1/scenarios": "20/10m",
    "PUT /omni/1/scenarios/{key}": "40/10m",
    "GET /omni/1/logs": "120/1m",
    "POST /omni/1/advanced": "50000/1s",
    "POST /omni/1/text": "50000/1s",
}
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


class RateLimitError(ValueError):
    """A ``[rate_limits]`` entry names no endpoint or cannot be read."""


@dataclass(frozen=True)
class Limit:
    """``requests`` per ``seconds``: a bucket of that many tokens, refilled evenly over that period."""

    requests: int
    seconds: float

    @property
    def rate(self) -> float:
        """Tokens a second."""
        return self.requests / self.seconds

    @property
    def lease(self) -> int:
        """Tokens a process takes at once: 5 % of the bucket or 50 ms of refill, whichever is less, at least one
        (so the documented low limits are taken one token at a time, exactly)."""
        return max(1, min(self.requests // 20, int(self.rate * 0.05)))

    @property
    def retry_after(self) -> int:
        """Whole seconds after which an empty bucket surely holds a token again."""
        return max(1, math.ceil(self.seconds / self.requests))


def parse(text: str) -> Limit | None:
    """``"20/10m"`` → 20 requests per 600 s; ``"off"`` → None."""
    if text == "off":
        return None
    count, _, period = text.partition("/")
    try:
        requests = int(count)
        seconds = float(period[:-1] or 1) * _UNITS[period[-1:]]
    except (ValueError, KeyError):
        raise RateLimitError(f"rate limit {text!r}: expected N/period such as 20/10m, or off") from None
    if requests < 1 or seconds <= 0:
        raise RateLimitError(f"rate limit {text!r}: needs at least one request in a positive period")
    return Limit(requests, seconds)


def limits(configured: dict[str, str], endpoints: set[str]) -> dict[str, Limit]:
    """The limits in force: the defaults with the configured entries over them; an entry must name one of
    ``endpoints`` (``METHOD /path`` as routed)."""
    unknown = sorted(set(configured) - endpoints)
    if unknown:
        raise RateLimitError(
            f"[rate_limits]: no endpoint {', '.join(map(repr, unknown))}; endpoints are: {', '.join(sorted(endpoints))}"
        )
    found = {}
    for endpoint, text in {**DEFAULTS, **configured}.items():
        limit = parse(text)
        if limit is not None:
            found[endpoint] = limit
    return found


@dataclass
class _Lease:
    tokens: int = 0
    refill: asyncio.Task[int] | None = field(default=None, repr=False)


class RateLimiter:
    """Admits or refuses requests by account and endpoint."""

    def __init__(self, store: Store, in_force: dict[str, Limit]) -> None:
        self._store = store
        self._limits = in_force
        self._leases: dict[tuple[int, str], _Lease] = {}

    def set_limits(self, in_force: dict[str, Limit]) -> None:
        """Put these limits in force (once the application's routes, which the limits name, are known)."""
        self._limits = in_force
        self._leases.clear()

    async def check(self, account_id: int, endpoint: str) -> int | None:
        """None when the request may pass (it spends a token); else the seconds to wait (``Retry-After``)."""
        limit = self._limits.get(endpoint)
        if limit is None:
            return None
        lease = self._leases.get((account_id, endpoint))
        if lease is None:
            lease = self._leases[(account_id, endpoint)] = _Lease()
        while lease.tokens <= 0:
            if lease.refill is None:
                lease.refill = asyncio.create_task(self._refill(account_id, endpoint, limit, lease))
            # shielded: a client hanging up must not cancel the refill the others wait for
            if await asyncio.shield(lease.refill) == 0:
                return limit.retry_after
        lease.tokens -= 1
        return None

    async def _refill(self, account_id: int, endpoint: str, limit: Limit, lease: _Lease) -> int:
        try:
            granted = await self._store.take_tokens(
                f"api:{account_id}:{endpoint}", limit.lease, limit.rate, limit.requests, time.time()
            )
            lease.tokens += granted
            return granted
        finally:
            lease.refill = None


def rate_limit_middleware(limiter: RateLimiter) -> web.middleware:  # type: ignore[valid-type]
    """Refuse a request of an account past its endpoint's limit with 429 in Infobip's envelope (after auth)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        account = request.get("account")
        resource = request.match_info.route.resource
        if account is not None and resource is not None:
            wait = await limiter.check(account.id, f"{request.method} {resource.canonical}")
            if wait is not None:
                response = envelope(429)
                response.headers["Retry-After"] = str(wait)
                return response
        return await handler(request)

    return middleware
