"""The engine records each submission's answer as soon as its channel hands it over, not when the channel's
whole batch is answered, and counts a submission as in flight only until its own answer.

The channel is an in-test double that answers some submissions at once and holds others; the store is a real
SQLite file.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from omnirelay.connectors.base import Answered, LaterReport, SubmitResult
from omnirelay.domain.delivery import Submission
from omnirelay.domain.message import MessageState, state_decoder
from omnirelay.domain.model import AdvancedRequest
from omnirelay.domain.validation import Accepted, Limits
from omnirelay.engine.worker import Engine, EngineSettings
from omnirelay.sending import Sender
from omnirelay.store.sqlite import SqliteStore

from .test_engine_async_channel import FLOW, TARIFFS


class HoldingChannel:
    """Answers every submission at once through ``answered``, except those of ``hold`` until ``release``."""

    def __init__(self, hold: set[str]) -> None:
        self.hold = hold
        self.release = asyncio.Event()
        self.calls: list[list[str]] = []

    async def submit(self, batch: list[Submission], answered: Answered | None = None) -> list[SubmitResult]:
        self.calls.append([s.message_id for s in batch])
        results = [SubmitResult(f"p-{s.message_id}", [LaterReport(60, "DELIVERED")]) for s in batch]
        for i, sub in enumerate(batch):
            if sub.message_id not in self.hold and answered is not None:
                answered(i, results[i])
        if any(s.message_id in self.hold for s in batch):
            await self.release.wait()
        for i, sub in enumerate(batch):
            if sub.message_id in self.hold and answered is not None:
                answered(i, results[i])
        return results

    async def close(self) -> None:
        return None


async def _accept(store: SqliteStore, account: int, message_ids: list[str]) -> None:
    destinations = [{"to": {"phoneNumber": f"4179123456{i}"}, "messageId": m} for i, m in enumerate(message_ids)]
    request = msgspec.convert({"destinations": destinations, "sms": {"text": "hi"}}, AdvancedRequest)
    sender = Sender(store, Limits(), TARIFFS)
    now = time.time()
    plan = sender.plan(request, FLOW, now)
    assert isinstance(plan, Accepted)
    await sender.accept(account, plan, now)


async def _state(store: SqliteStore, account: int, message_id: str) -> MessageState:
    view = await store.message(account, message_id)
    assert view is not None
    return state_decoder.decode(view.state)


async def _until_called(channel: HoldingChannel, n: int) -> None:
    for _ in range(200):
        if len(channel.calls) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(channel.calls)} of {n} channel calls")


def _engine(store: SqliteStore, sms: HoldingChannel, max_in_flight: int = 5000) -> Engine:
    return Engine(store, {"SMS": sms}, TARIFFS, EngineSettings(max_in_flight=max_in_flight))


async def test_an_answer_is_recorded_while_its_batch_still_waits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "o.db")
    try:
        account = (await store.create_account("a", None, "s", "cli")).id
        await _accept(store, account, ["m1", "m2"])
        sms = HoldingChannel(hold={"m2"})
        engine = _engine(store, sms)
        await engine.cycle()
        await _until_called(sms, 1)
        assert sms.calls == [["m1", "m2"]]  # one batch
        await engine.cycle()
        m1, m2 = await _state(store, account, "m1"), await _state(store, account, "m2")
        assert (m1.attempts[-1].state, m1.attempts[-1].provider_id) == ("ACCEPTED", "p-m1")
        assert m2.attempts[-1].state == "SUBMITTING"
        sms.release.set()
        await engine.wait_submissions()
        await engine.cycle()
        m2 = await _state(store, account, "m2")
        assert (m2.attempts[-1].state, m2.attempts[-1].provider_id) == ("ACCEPTED", "p-m2")
    finally:
        await store.close()


async def test_only_unanswered_submissions_count_against_max_in_flight(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "o.db")
    try:
        account = (await store.create_account("a", None, "s", "cli")).id
        await _accept(store, account, ["m1", "m2"])
        sms = HoldingChannel(hold={"m2"})
        engine = _engine(store, sms, max_in_flight=2)
        await asyncio.wait_for(engine.cycle(), 5)  # m1 answered at once: one in flight, below the limit
        await _until_called(sms, 1)
        await _accept(store, account, ["m3"])
        await asyncio.wait_for(engine.cycle(), 5)
        await _until_called(sms, 2)
        assert sms.calls == [["m1", "m2"], ["m3"]]
        sms.hold.add("m4")
        sms.hold.add("m5")
        await _accept(store, account, ["m4", "m5"])
        cycle = asyncio.create_task(engine.cycle())  # m2, m4, m5 unanswered: 3 >= 2, it waits for room
        await _until_called(sms, 3)
        await asyncio.sleep(0.1)
        assert not cycle.done()
        sms.release.set()
        await asyncio.wait_for(cycle, 5)
        await engine.wait_submissions()
    finally:
        await store.close()
