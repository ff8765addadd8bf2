"""Durability: an answered send is on disk. The server is killed with SIGKILL (no cleanup runs) right
after, or even while, it answers; after a restart on the same data dir every accepted message is there."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from .conftest import Gateway

CONCURRENCY = 20


def request_body(key: str, i: int, run: str) -> dict[str, Any]:
    return {
        "scenarioKey": key,
        "destinations": [{"messageId": f"{run}-{i:04d}", "to": {"phoneNumber": f"4179{i:07d}"}}],
        "whatsApp": {"text": f"message {i}"},
        "sms": {"text": f"sms {i}"},
        "callbackData": f"cb-{i}",
    }


async def send_all(gw: Gateway, bodies: list[dict[str, Any]], concurrency: int = CONCURRENCY,
                   on_answer: Any = None) -> list[tuple[int, Any] | BaseException]:
    """POST every body, ``concurrency`` at a time; the (status, json) of each, or the exception it met."""
    sem = asyncio.Semaphore(concurrency)
    results: list[tuple[int, Any] | BaseException] = [RuntimeError("not sent")] * len(bodies)

    async with gw.session() as session:

        async def one(i: int, body: dict[str, Any]) -> None:
            async with sem:
                try:
                    async with session.post("/omni/1/advanced", json=body,
                                            timeout=aiohttp.ClientTimeout(total=30)) as resp:
                        results[i] = (resp.status, json.loads(await resp.read()))
                except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as exc:
                    results[i] = exc
                    return
                if on_answer is not None:
                    on_answer(i)

        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    return results


def stored_message_ids(gw: Gateway) -> set[str]:
    return {row[0] for row in gw.query("SELECT message_id FROM messages")}


def count_rows(gw: Gateway, table: str) -> int:
    return int(gw.query(f"SELECT COUNT(*) FROM {table}")[0][0])


async def test_accepted_messages_survive_kill_9(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    key = gw.create_scenario(name="durable", default=True)["key"]
    bodies = [request_body(key, i, "k9") for i in range(200)]

    answers = await send_all(gw, bodies)
    gw.kill9()  # right after the last answer

    assert all(isinstance(a, tuple) and a[0] == 200 for a in answers), [a for a in answers if not
                                                                          (isinstance(a, tuple) and a[0] == 200)][:3]
    accepted = [a[1] for a in answers if isinstance(a, tuple)]
    ids = [m["messageId"] for a in accepted for m in a["messages"]]
    assert ids == [f"k9-{i:04d}" for i in range(200)]

    # straight from the file, before any server touches it again
    assert count_rows(gw, "messages") == 200
    assert stored_message_ids(gw) == set(ids)

    gw.start()
    replayed = await send_all(gw, bodies)
    assert [r if isinstance(r, BaseException) else r[0] for r in replayed] == [200] * 200
    assert [r[1] for r in replayed if isinstance(r, tuple)] == accepted  # identical answers: they were stored
    assert count_rows(gw, "messages") == 200  # and the replays stored nothing new

    # the restarted server takes new work as usual
    more = await send_all(gw, [request_body(key, i, "after") for i in range(20)])
    assert all(isinstance(r, tuple) and r[0] == 200 for r in more)
    assert count_rows(gw, "messages") == 220


async def test_every_answered_message_survives_a_kill_mid_traffic(make_gateway: Any) -> None:
    """Killed while requests are still in flight: whatever got a 200 is stored (an answer means durable);
    whatever did not may or may not be, but nothing is half-stored."""
    gw: Gateway = make_gateway()
    key = gw.create_scenario(name="durable")["key"]
    bodies = [request_body(key, i, "mid") for i in range(400)]
    answered: list[int] = []

    def on_answer(i: int) -> None:
        answered.append(i)
        if len(answered) == 120 and gw.proc is not None and gw.proc.poll() is None:
            gw.proc.kill()  # SIGKILL with up to 30 requests still in flight

    answers = await send_all(gw, bodies, concurrency=30, on_answer=on_answer)
    gw.kill9()
    ok = {i: a[1] for i, a in enumerate(answers) if isinstance(a, tuple) and a[0] == 200}
    assert len(ok) >= 120
    assert len(ok) < len(bodies), "the kill came too late to cut any request"
    assert all(not isinstance(a, tuple) or a[0] == 200 for a in answers), "an answer other than 200"

    stored = stored_message_ids(gw)
    for i in ok:
        assert f"mid-{i:04d}" in stored, f"message {i} was answered 200 but is not stored"
    # every stored message has its request and its first job
    orphans = gw.query("SELECT COUNT(*) FROM messages m LEFT JOIN requests r ON r.id = m.request_id"
                       " WHERE r.id IS NULL")[0][0]
    assert orphans == 0

    gw.start()
    replayed = await send_all(gw, bodies)
    assert all(isinstance(r, tuple) and r[0] == 200 for r in replayed), [r for r in replayed
                                                                         if not isinstance(r, tuple)][:3]
    for i, answer in ok.items():
        assert replayed[i][1] == answer  # type: ignore[index]
    assert count_rows(gw, "messages") == 400


async def test_graceful_stop_and_restart_keeps_scenarios_and_messages(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    scenario = gw.create_scenario(name="kept", default=True)
    body = request_body(scenario["key"], 1, "graceful")
    first = gw.post("/omni/1/advanced", body)
    assert first.status == 200, first
    started = time.monotonic()
    code = gw.stop()
    assert code == 0, gw.outputs[-1]
    assert time.monotonic() - started < 10
    gw.start()
    assert gw.get(f"/omni/1/scenarios/{scenario['key']}").json == scenario
    assert gw.post("/omni/1/advanced", body).json == first.json
    assert count_rows(gw, "messages") == 1
