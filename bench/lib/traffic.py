"""End-to-end traffic: messages sent through ``POST /omni/1/advanced`` on a sandbox path while their reports are
pulled, and the per-message timings read back from the stored states."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import msgspec

from bench.lib.gateway import API_KEY, FLOW

#: The sandbox paths: the last digit of the numbers (README's default rules) and the WhatsApp content.
PATHS = {
    "delivered": ("0", {"text": "Hello on WhatsApp"}),  # delivered on the first step
    "rejected": ("7", {"text": "Hello on WhatsApp"}),  # not a WhatsApp user: fails over to SMS at once
    "silent": ("5", {"text": "Hello on WhatsApp", "validityPeriod": 1, "validityPeriodTimeUnit": "SECONDS"}),
}


async def drive(
    url: str,
    total: int,
    per_request: int,
    concurrency: int,
    path: str,
    timeout: float,
    first: int = 0,
    flow: list[dict[str, str]] = FLOW,
) -> tuple[float, int, float]:
    """Send ``total`` messages on ``path`` (to a default scenario of ``flow``) and pull their reports; (seconds to
    the last report, reports, seconds to the last accept). ``first`` numbers the requests on from an earlier call
    (destinations stay distinct)."""
    headers = {"Authorization": f"App {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=concurrency + 2)) as s:
        async with s.post(f"{url}/omni/1/scenarios", json={"flow": flow, "default": True}) as r:
            key = (await r.json())["key"]
        requests = total // per_request
        queue: asyncio.Queue[int] = asyncio.Queue()
        for b in range(first, first + requests):
            queue.put_nowait(b)
        got = 0

        async def sender() -> None:
            while not queue.empty():
                b = queue.get_nowait()
                body = {
                    "scenarioKey": key,
                    "destinations": [
                        {"to": {"phoneNumber": f"4179{b:06d}{i:03d}{PATHS[path][0]}"}} for i in range(per_request)
                    ],
                    "whatsApp": PATHS[path][1],
                    "sms": {"text": "Hello by SMS"},
                }
                async with s.post(f"{url}/omni/1/advanced", json=body) as r:
                    assert r.status == 200, await r.text()

        async def poller() -> None:
            nonlocal got
            deadline = time.monotonic() + timeout
            while got < total:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {got} of {total} reports within {timeout:.0f} s")
                async with s.get(f"{url}/omni/1/reports?limit=1000") as r:
                    n = len((await r.json())["results"])
                got += n
                if n == 0:
                    await asyncio.sleep(0.02)

        started = time.perf_counter()
        accepted_at: list[float] = []

        async def senders() -> None:
            await asyncio.gather(*(sender() for _ in range(concurrency)))
            accepted_at.append(time.perf_counter())

        await asyncio.gather(poller(), senders())
        return time.perf_counter() - started, got, accepted_at[0] - started


class _Attempt(msgspec.Struct):
    step: int
    state: str
    started_at: float
    done_at: float | None = None


class _State(msgspec.Struct):
    attempts: list[_Attempt] = []
    done_at: float | None = None


def failover_gaps(states: list[tuple[float, bytes]]) -> tuple[list[float], list[float]]:
    """Milliseconds from the WhatsApp step's failure (rejection or expiry) to the SMS submission, and from accept
    to the final outcome, per message, from ``(created_at, state)`` rows of ``messages``."""
    decoder = msgspec.json.Decoder(_State)
    gaps = []
    totals = []
    for created_at, raw in states:
        state = decoder.decode(raw)
        if state.done_at is not None:
            totals.append((state.done_at - created_at) * 1000)
        attempts = state.attempts
        wa = next((a for a in attempts if a.step == 0 and a.state in ("REJECTED", "EXPIRED")), None)
        sms = next((a for a in attempts if a.step == 1 and a.state not in ("PENDING", "SKIPPED")), None)
        if wa is not None and wa.done_at is not None and sms is not None:
            gaps.append((sms.started_at - wa.done_at) * 1000)
    return gaps, totals


def p50(ordered: list[float]) -> float | None:
    """The median of sorted milliseconds, to 0.1 ms (None when there are none)."""
    return round(statistics.median(ordered), 1) if ordered else None


def p99(ordered: list[float]) -> float | None:
    """The 99th percentile of sorted milliseconds, to 0.1 ms (None when there are none)."""
    return round(ordered[int(len(ordered) * 0.99) - 1], 1) if ordered else None
