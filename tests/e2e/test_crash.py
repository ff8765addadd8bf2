"""kill -9 while 3,000 messages flow, twice: afterwards every message has exactly one final report, every
step was submitted at most once, and resending a request with the same messageIds sends nothing twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp

from .conftest import ALADDIN_CONFIG, WHATSAPP_SMS_FLOW, Gateway
from .test_failover import get_message, history, validity

CONFIG = ALADDIN_CONFIG + """
[limits]
min_validity_seconds = 1

[[sandbox.rules]]
channel = "WHATSAPP"
outcome = "REJECTED"
after_ms = 50
"""

REQUESTS = 30
PER_REQUEST = 100
TOTAL = REQUESTS * PER_REQUEST


def request_body(r: int) -> dict[str, Any]:
    return {
        "bulkId": f"crash-bulk-{r:02d}",
        "destinations": [
            {"to": {"phoneNumber": f"4176{r:02d}{i:05d}"}, "messageId": f"crash-{r:02d}-{i:03d}"}
            for i in range(PER_REQUEST)
        ],
        "whatsApp": {"text": "Hi on WhatsApp", **validity(2)},
        "sms": {"text": "Hi by SMS", **validity(2)},
    }


BODIES = [request_body(r) for r in range(REQUESTS)]
ALL_IDS = {d["messageId"] for body in BODIES for d in body["destinations"]}


async def send_requests(gw: Gateway, which: list[int], concurrency: int = 30) -> dict[int, dict[str, Any]]:
    """Send these requests, ``concurrency`` at a time; the answers of those that got a 200 (the others were
    cut by a kill)."""
    answers: dict[int, dict[str, Any]] = {}
    slots = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, r: int) -> None:
        async with slots:
            try:
                async with session.post("/omni/1/advanced", json=BODIES[r],
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    if resp.status == 200:
                        answers[r] = await resp.json()
            except (aiohttp.ClientError, TimeoutError):
                pass

    async with gw.session() as session:
        await asyncio.gather(*(one(session, r) for r in which))
    return answers


def check_answer(r: int, answer: dict[str, Any]) -> None:
    assert answer["bulkId"] == f"crash-bulk-{r:02d}", answer
    assert [m["messageId"] for m in answer["messages"]] == [d["messageId"] for d in BODIES[r]["destinations"]]
    assert [m["to"] for m in answer["messages"]] == [d["to"] for d in BODIES[r]["destinations"]]


async def kill_while_sending(gw: Gateway, which: list[int], after: float) -> dict[int, dict[str, Any]]:
    """Send (a few requests at a time, so the kill cuts some) and kill -9 the server meanwhile; restart it."""
    task = asyncio.create_task(send_requests(gw, which, concurrency=2))
    await asyncio.sleep(after)
    gw.kill9()
    answers = await task
    gw.start()
    return answers


async def test_kill_9_twice_while_3000_messages_flow(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(CONFIG)
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    started = time.monotonic()

    answered: dict[int, dict[str, Any]] = {}
    answered.update(await kill_while_sending(gw, list(range(REQUESTS)), 0.3))
    # second kill: resend what the first cut off, and kill again while the engine works through the rest
    missing = [r for r in range(REQUESTS) if r not in answered]
    answered.update(await kill_while_sending(gw, missing, 0.3))

    # every request once more with the same messageIds: all 200, the same answer, nothing sent twice
    again = await send_requests(gw, list(range(REQUESTS)))
    unanswered = set(range(REQUESTS)) - set(again)
    assert not unanswered, f"requests not answered 200 after restart: {unanswered}"
    for r, answer in again.items():
        check_answer(r, answer)
        if r in answered:
            assert answer == answered[r], r

    # exactly one report per message, across every poll
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + 60
    bad: list[dict[str, Any]] = []
    while set(counts) != ALL_IDS and time.monotonic() < deadline:
        pulled = gw.get("/omni/1/reports?limit=1000")
        assert pulled.status == 200, pulled
        results = pulled.json["results"]
        for report in results:
            counts[report["messageId"]] += 1
            if report["channel"] != "SMS" or report["status"]["name"] not in ("DELIVERED_TO_HANDSET",
                                                                               "EXPIRED_EXPIRED"):
                bad.append(report)
        if not results:
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    for report in gw.get("/omni/1/reports?limit=1000").json["results"]:
        counts[report["messageId"]] += 1
    dups = {m: c for m, c in counts.items() if c > 1}
    assert not dups, f"{len(dups)} messages reported more than once, e.g. {list(dups.items())[:5]}"
    assert set(counts) - ALL_IDS == set(), f"reports of unknown messages: {list(set(counts) - ALL_IDS)[:5]}"
    missing_ids = ALL_IDS - set(counts)
    assert not missing_ids, f"{len(missing_ids)} messages without a report, e.g. {sorted(missing_ids)[:5]}"
    assert not bad, f"{len(bad)} unexpected final reports, e.g. {bad[:2]}"

    # no message was stored twice
    for r in range(REQUESTS):
        logs = gw.get(f"/omni/1/logs?bulkId=crash-bulk-{r:02d}&limit=1000")
        assert logs.status == 200, logs
        ids = [e["messageId"] for e in logs.json["results"]]
        assert sorted(ids) == sorted(d["messageId"] for d in BODIES[r]["destinations"]), r

    # each step submitted at most once (WhatsApp and SMS exactly once: every number is new, the end is SMS)
    for message_id in random.Random(7).sample(sorted(ALL_IDS), 200):
        msg = get_message(gw, message_id)
        assert msg["phase"] == "DONE", msg
        lines = [t for t in history(msg) if "submitted" in t]
        per_step = Counter(t.split(" submitted")[0] for t in lines)
        assert per_step == {"step 1 (WHATSAPP)": 1, "step 2 (SMS)": 1}, (message_id, history(msg))
    assert time.monotonic() - started < 90
