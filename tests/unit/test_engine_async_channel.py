"""The engine with a channel that answers over the network (as SMPP, WhatsApp Cloud and SMTP will): the step is
stored as SUBMITTING before it is handed over, its answer is recorded by the next transaction, a later report
finishes it, and a broken connector fails the step over instead of stalling the engine.

The channel is an in-test double; the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import msgspec
import pytest

from omnirelay.connectors.base import Answered, LaterReport, SubmitResult
from omnirelay.domain.delivery import Submission
from omnirelay.domain.message import state_decoder
from omnirelay.domain.model import AdvancedRequest, Step
from omnirelay.domain.numbering import MccMncTable
from omnirelay.domain.pricing import PriceList
from omnirelay.domain.reports import Tariffs
from omnirelay.domain.validation import Accepted, Limits
from omnirelay.engine.worker import Engine
from omnirelay.sending import Sender
from omnirelay.store.sqlite import SqliteStore

FLOW = [Step(channel="SMS", from_="InfoSMS"), Step(channel="EMAIL", from_="a@example.com")]
TARIFFS = Tariffs(PriceList("EUR"), MccMncTable({}))


class NetworkChannel:
    """Answers asynchronously; looks at the database while it is being called."""

    def __init__(self, store: SqliteStore, fail: bool = False) -> None:
        self.store = store
        self.fail = fail
        self.calls: list[Submission] = []
        self.states_seen: list[str] = []

    async def submit(self, batch: list[Submission], answered: Answered | None = None) -> list[SubmitResult]:
        for sub in batch:
            self.calls.append(sub)
            view = await self.store.message(sub.account_id, sub.message_id)
            assert view is not None
            self.states_seen.append(state_decoder.decode(view.state).attempts[-1].state)
        if self.fail:
            raise ConnectionError("SMSC unreachable")
        return [SubmitResult(f"smsc-{s.message_id}", [LaterReport(0.3, "DELIVERED")]) for s in batch]

    async def close(self) -> None:
        return None


async def _accept(store: SqliteStore) -> tuple[int, str]:
    account = await store.create_account("a", None, "s", "cli")
    request = msgspec.convert(
        {
            "destinations": [
                {"to": {"phoneNumber": "41791234567", "emailAddress": "x@example.com"}, "messageId": "m1"}
            ],
            "sms": {"text": "hi"},
            "email": {"text": "hi", "subject": "s"},
        },
        AdvancedRequest,
    )
    sender = Sender(store, Limits(), TARIFFS)
    now = time.time()
    plan = sender.plan(request, FLOW, now)
    assert isinstance(plan, Accepted)
    await sender.accept(account.id, plan, now)
    return account.id, "m1"


def _engine(store: SqliteStore, sms: NetworkChannel, email: NetworkChannel) -> Engine:
    return Engine(store, {"SMS": sms, "EMAIL": email}, TARIFFS)


async def _state(store: SqliteStore, account: int, message_id: str) -> object:
    view = await store.message(account, message_id)
    assert view is not None
    return state_decoder.decode(view.state)


async def test_submitting_is_stored_before_the_network_call_and_answers_after(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "o.db")
    try:
        account, mid = await _accept(store)
        sms, email = NetworkChannel(store), NetworkChannel(store)
        engine = _engine(store, sms, email)
        await engine.cycle()
        await engine.wait_submissions()
        assert [c.channel for c in sms.calls] == ["SMS"]
        assert sms.states_seen == ["SUBMITTING"], "the step was committed as SUBMITTING before the call"
        await engine.cycle()  # records the channel's answer
        state = await _state(store, account, mid)
        assert state.attempts[-1].state == "ACCEPTED"  # type: ignore[attr-defined]
        assert state.attempts[-1].provider_id == "smsc-m1"  # type: ignore[attr-defined]
        deadline = time.time() + 5
        while state.phase != "DONE" and time.time() < deadline:  # type: ignore[attr-defined]
            await engine.cycle()
            await engine.wait_submissions()
            state = await _state(store, account, mid)
        assert state.phase == "DONE" and state.channel == "SMS"  # type: ignore[attr-defined]
        assert len(sms.calls) == 1 and email.calls == []
        (report,) = await store.take_reports(account, None, None, None, 10)
        assert msgspec.json.decode(report)["status"]["name"] == "DELIVERED_TO_HANDSET"
    finally:
        await store.close()


async def test_broken_connector_fails_the_step_over(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "o.db")
    try:
        account, mid = await _accept(store)
        sms, email = NetworkChannel(store, fail=True), NetworkChannel(store)
        engine = _engine(store, sms, email)
        for _ in range(4):
            await engine.cycle()
            await engine.wait_submissions()
        state = await _state(store, account, mid)
        first = state.attempts[0]  # type: ignore[attr-defined]
        assert (first.channel, first.state, first.error) == ("SMS", "REJECTED", "EC_NOTSUBMITTEDTOGMSC")
        assert "SMSC unreachable" in (first.note or "")
        assert [c.channel for c in email.calls] == ["EMAIL"], "failed over to the next step, once"
        assert len(sms.calls) == 1
    finally:
        await store.close()


async def test_answers_survive_a_failed_transaction(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "o.db")
    try:
        account, mid = await _accept(store)
        sms, email = NetworkChannel(store), NetworkChannel(store)
        engine = _engine(store, sms, email)
        await engine.cycle()
        await engine.wait_submissions()
        real_step = store.engine_step
        calls = 0

        async def failing_once(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError("database away")
            return await real_step(*args, **kwargs)  # type: ignore[arg-type]

        store.engine_step = failing_once  # type: ignore[method-assign]
        with pytest.raises(OSError):
            await engine.cycle()
        await engine.wait_submissions()
        await engine.cycle()  # the answer kept from the failed cycle is recorded now
        state = await _state(store, account, mid)
        assert state.attempts[-1].provider_id == "smsc-m1"  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_an_outage_while_idle_does_not_end_the_engine(tmp_path: Path) -> None:
    """The engine's idle wait asks the store when the next job is due; the database going away right then (a
    PostgreSQL failover) must leave the engine running, to finish what is accepted after it is back."""
    store = SqliteStore(tmp_path / "o.db")
    try:
        sms, email = NetworkChannel(store), NetworkChannel(store)
        engine = _engine(store, sms, email)
        real_next_due = store.next_due
        outages = 0

        async def next_due_once_down() -> float | None:
            nonlocal outages
            if outages == 0:
                outages += 1
                raise ConnectionRefusedError(111, "Connection refused")
            return await real_next_due()

        store.next_due = next_due_once_down  # type: ignore[method-assign]
        running = asyncio.create_task(engine.run())
        deadline = time.time() + 5
        while outages == 0 and time.time() < deadline:
            await asyncio.sleep(0.01)
        assert outages == 1 and not running.done(), "the engine ended on an outage of its idle wait"
        account, mid = await _accept(store)
        engine.wake()
        while (await _state(store, account, mid)).phase != "DONE" and time.time() < deadline:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
        assert (await _state(store, account, mid)).phase == "DONE"  # type: ignore[attr-defined]
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    finally:
        await store.close()
