"""The SMPP connector's answers against the node-smpp SMSC: each message's result is handed over as soon as all
of its own parts are answered (not when the batch is), and an unbind from the SMSC is answered before the
connection closes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from omnirelay.connectors.base import SubmitResult

from .test_smpp import connector, make_channel, sms, until

__all__ = ["make_channel"]  # the fixture, used by name

LONG = "Three parts of GSM text. " * 18  # 450 septets: 3 parts of 153


async def test_a_message_is_answered_when_its_own_parts_are(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(answer_first=3)  # answers B, A1 and A2; holds A3 and C
    channel, _ = await make_channel(connector(smsc, response_timeout_seconds=60))
    answered: dict[int, SubmitResult] = {}
    batch = [sms(1, "41793026721", "B"), sms(2, "41793026722", LONG), sms(3, "41793026723", "C")]
    submitting = asyncio.create_task(channel.submit(batch, lambda i, r: answered.__setitem__(i, r)))
    await until(lambda: len(smsc.held()) == 2, what="A3 and C to be held")
    b_id = next(p["message_id"] for p in smsc.answered() if p["destination_addr"] == "41793026721")
    await until(lambda: 0 in answered, what="B's result while the batch waits")
    assert answered == {0: SubmitResult(f"smsc:{b_id}")}  # not A: its receipt-carrying part is unanswered
    assert not submitting.done()
    assert [p["destination_addr"] for p in smsc.submits()] == ["41793026721"] + ["41793026722"] * 3 + ["41793026723"]
    smsc.kill()  # the held PDUs may have reached the SMSC: no id, left to their validity
    results = await asyncio.wait_for(submitting, 10)
    assert results == [SubmitResult(f"smsc:{b_id}"), SubmitResult(None), SubmitResult(None)]
    assert answered == dict(enumerate(results))


async def test_an_unbind_from_the_smsc_is_answered_before_the_close(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(unbind_ms=200)
    channel, _ = await make_channel(connector(smsc, reconnect_max_seconds=0.5))
    await until(lambda: smsc.records("unbind_resp") or smsc.records("unbind_unanswered"), what="the unbind's end")
    assert [r["status"] for r in smsc.records("unbind_resp")] == [0]
    assert not smsc.records("unbind_unanswered")
    # and the connector binds again
    await until(lambda: len(smsc.records("bind_transceiver")) == 2, what="a new bind")
    assert await channel.wait_bound(10)
