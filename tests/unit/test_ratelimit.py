"""The rate limiter's leases: tokens are taken from the shared bucket in batches, once for many waiting requests."""

from __future__ import annotations

import asyncio

import pytest

from omnirelay.api.ratelimit import DEFAULTS, Limit, RateLimiter, RateLimitError, limits, parse
from omnirelay.store.rows import take_tokens


class BucketStore:
    """A fake of the store's shared token bucket that counts its round trips (and can be slow)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}
        self.calls: list[int] = []
        self.delay = delay
        self.now = 1000.0

    async def take_tokens(self, key: str, want: int, rate: float, burst: float, now: float) -> int:
        self.calls.append(want)
        await asyncio.sleep(self.delay)
        granted, left = take_tokens(self.buckets.get(key), want, rate, burst, self.now)
        self.buckets[key] = (left, self.now)
        return granted


def test_parse() -> None:
    assert parse("20/10m") == Limit(20, 600.0)
    assert parse("120/m") == Limit(120, 60.0)
    assert parse("5/1.5h") == Limit(5, 5400.0)
    assert parse("off") is None
    with pytest.raises(RateLimitError):
        parse("5/10d")


def test_leases_and_retry_after() -> None:
    assert Limit(20, 600).lease == 1 and Limit(20, 600).retry_after == 30
    assert Limit(120, 60).lease == 1
    assert Limit(50_000, 1).lease == 2_500 and Limit(50_000, 1).retry_after == 1


def test_configured_endpoints_must_exist() -> None:
    endpoints = set(DEFAULTS) | {"GET /omni/1/scenarios"}
    found = limits({"GET /omni/1/scenarios": "5/1s", "GET /omni/1/logs": "off"}, endpoints)
    assert found["GET /omni/1/scenarios"] == Limit(5, 1.0)
    assert "GET /omni/1/logs" not in found
    assert found["POST /omni/1/scenarios"] == Limit(20, 600.0)
    with pytest.raises(RateLimitError, match="GET /omni/1/scenario'"):
        limits({"GET /omni/1/scenario": "5/1s"}, endpoints)


async def test_concurrent_requests_share_one_refill() -> None:
    store = BucketStore(delay=0.01)
    limiter = RateLimiter(store, {"POST /x": Limit(50_000, 1)})  # type: ignore[arg-type]
    answers = await asyncio.gather(*(limiter.check(1, "POST /x") for _ in range(2_000)))
    assert answers == [None] * 2_000
    assert store.calls == [2_500], "one round trip for 2,000 requests"


async def test_past_the_budget_requests_are_refused_with_retry_after() -> None:
    store = BucketStore()
    limiter = RateLimiter(store, {"POST /x": Limit(3, 12)})  # type: ignore[arg-type]
    answers = [await limiter.check(1, "POST /x") for _ in range(5)]
    assert answers == [None, None, None, 4, 4]
    assert await limiter.check(2, "POST /x") is None, "another account has its own bucket"
    assert await limiter.check(1, "POST /y") is None, "an endpoint without a limit is never refused"
    store.now += 4
    assert await limiter.check(1, "POST /x") is None
    assert await limiter.check(1, "POST /x") == 4
