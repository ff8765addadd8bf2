"""Inbound SMS against the node-smpp SMSC, stored in each real store: the SMSC sends mobile-originated deliver_sm
(single, concatenated by UDH 8- and 16-bit references and by SAR TLVs, sent again), the connector decodes them,
:class:`~omnirelay.inbound_sms.InboundSms` routes and stores them, and the SMSC gets deliver_sm_resp after that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from omnirelay.config import AccountConfig, PricingConfig, Settings, SmppConfig, SmppConnectorConfig
from omnirelay.connectors.smpp.connector import SmppChannel
from omnirelay.domain.delivery import Receipt
from omnirelay.domain.inbound import InboundPart
from omnirelay.inbound_sms import InboundSms
from omnirelay.metrics import Metrics
from omnirelay.store.base import Store
from peers.smsc.harness import PASSWORD, SYSTEM_ID, Smsc, gsm7, udh8, udh16

from .test_smpp import until

pytestmark = pytest.mark.timeout(120)

OURS = "4915790000001"
USER = "4917612345678"
INBOUND_URL = "http://127.0.0.1:9/inbound"
UDHI = 0x40
UCS2 = 8


class Gate:
    """The inbound sink in between: can fail the first calls (the database away) before passing on."""

    def __init__(self, inner: Callable[[list[InboundPart]], Any]) -> None:
        self.inner = inner
        self.fail_first = 0
        self.calls = 0

    async def __call__(self, parts: list[InboundPart]) -> None:
        self.calls += 1
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("database away")
        await self.inner(parts)


async def no_receipts(receipts: list[Receipt]) -> None:
    raise AssertionError(f"no receipts expected: {receipts}")


@pytest.fixture
async def inbound(store: Store, make_smsc: Any) -> AsyncIterator[tuple[Smsc, Store, Gate, InboundSms, Metrics]]:
    account = await store.create_account("aladdin", None, "s", "config")
    await store.create_account("bob", None, "s", "config")
    smsc = make_smsc()
    settings = Settings(
        accounts=[
            AccountConfig("aladdin", password="x", inbound_url=INBOUND_URL, inbound_numbers=[f"+{OURS}"],
                          inbound_keywords=["QUIZ"]),
            AccountConfig("bob", password="y", inbound_numbers=["4915790000002"]),
        ],
        pricing=PricingConfig(currency="EUR"),
        smpp=SmppConfig(
            connectors=[SmppConnectorConfig("smsc", SYSTEM_ID, PASSWORD, port=smsc.port, reconnect_max_seconds=0.5)]
        ),
    )
    metrics = Metrics()
    router = InboundSms(settings, store, metrics)
    gate = Gate(router.receive)
    channel = SmppChannel(settings.smpp, no_receipts, store, metrics, inbound=gate)
    await channel.start()
    assert await channel.wait_bound(10)
    assert account.id
    yield smsc, store, gate, router, metrics
    await channel.close()


async def pulled(store: Store, username: str = "aladdin") -> list[dict[str, Any]]:
    account = await store.account_by_username(username)
    assert account is not None
    bodies, _ = await store.take_inbound(account.id, 100, 0)
    return [msgspec.json.decode(b) for b in bodies]


async def wait_resps(smsc: Smsc, mo_id: str, n: int = 1, status: int | None = 0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await until(
        lambda: len(smsc.mo_resps(mo_id, status)) >= n and smsc.mo_resps(mo_id, status),
        what=f"{n} deliver_sm_resp for {mo_id}",
    )
    return found


async def test_single_gsm7_mo_is_stored_then_acknowledged_and_a_resend_is_dropped(inbound: Any) -> None:
    smsc, store, _gate, _router, metrics = inbound
    smsc.send_mo("m1", USER, OURS, gsm7("Quiz Paris €5 @ home"))
    await wait_resps(smsc, "m1")
    smsc.resend_mo("m1")  # the SMSC lost our deliver_sm_resp and sends it again
    await wait_resps(smsc, "m1", 2)
    (message,) = await pulled(store)
    assert (message["from"], message["to"], message["text"]) == (USER, OURS, "Quiz Paris €5 @ home")
    assert (message["keyword"], message["cleanText"], message["smsCount"]) == ("QUIZ", "Paris €5 @ home", 1)
    assert await pulled(store) == []  # pulled once
    # one webhook for the account's inbound_url, however often the SMSC sent it
    (pushed,) = [d for d in await store.claim_deliveries(10**10, 10, 30) if d.report_id.startswith("inbound-sms.")]
    assert pushed.url == INBOUND_URL
    assert msgspec.json.decode(pushed.body)["results"][0]["messageId"] == message["messageId"]
    text = metrics.render().decode()
    assert 'omnirelay_smpp_inbound_messages_total{result="duplicate"} 1.0' in text
    assert 'omnirelay_smpp_inbound_total{connector="smsc",result="received"} 2.0' in text


async def test_concatenated_mos_by_8_bit_16_bit_udh_and_sar_arrive_as_one_text_each(inbound: Any) -> None:
    smsc, store, _gate, _router, _metrics = inbound
    # 8-bit reference, UCS-2, parts out of order, one part sent twice
    ucs2 = ["Привет, ", "это длинное ", "сообщение 👋"]
    for seq in (2, 3, 1):
        smsc.send_mo(f"u{seq}", USER, OURS, udh8(17, 3, seq) + ucs2[seq - 1].encode("utf-16-be"), UCS2, UDHI)
    smsc.resend_mo("u2")
    # 16-bit reference, GSM-7
    for seq, text in ((1, "sixteen "), (2, "bit [ref]")):
        smsc.send_mo(f"w{seq}", USER, OURS, udh16(0x1234, 2, seq) + gsm7(text), 0, UDHI)
    # SAR TLVs, Latin-1
    for seq, text in ((1, "Grüße "), (2, "aus Köln")):
        tlvs: dict[str, int | bytes] = {"sar_msg_ref_num": 0x0BAD, "sar_total_segments": 2, "sar_segment_seqnum": seq}
        smsc.send_mo(f"s{seq}", USER, OURS, text.encode("latin-1"), 3, 0, tlvs)
    for mo_id in ("u1", "u3", "w1", "w2", "s1", "s2"):
        await wait_resps(smsc, mo_id)
    await wait_resps(smsc, "u2", 2)
    texts = sorted((m["text"], m["smsCount"]) for m in await pulled(store))
    assert texts == sorted([("Grüße aus Köln", 2), ("Привет, это длинное сообщение 👋", 3), ("sixteen bit [ref]", 2)])


async def test_a_store_failure_answers_an_error_and_the_smscs_resend_is_stored(inbound: Any) -> None:
    smsc, store, gate, _router, _metrics = inbound
    gate.fail_first = 1
    smsc.send_mo("m1", USER, OURS, gsm7("do not lose me"))
    (refused,) = await wait_resps(smsc, "m1", status=None)
    assert refused["status"] == 0x64  # ESME_RX_T_APPN: the SMSC sends it again
    await wait_resps(smsc, "m1")
    assert [m["text"] for m in await pulled(store)] == ["do not lose me"]
    assert gate.calls == 2


async def test_a_number_no_account_declares_is_acknowledged_and_not_stored(inbound: Any) -> None:
    smsc, store, _gate, _router, metrics = inbound
    smsc.send_mo("x", USER, "4915799999999", gsm7("to nobody"))
    smsc.send_mo("b", USER, "4915790000002", gsm7("to bob"))
    await wait_resps(smsc, "x")
    await wait_resps(smsc, "b")
    assert await pulled(store) == []
    assert [m["text"] for m in await pulled(store, "bob")] == ["to bob"]
    assert 'omnirelay_smpp_inbound_messages_total{result="unrouted"} 1.0' in metrics.render().decode()


async def test_missing_parts_are_delivered_as_they_are_after_the_timeout(inbound: Any) -> None:
    smsc, store, _gate, router, _metrics = inbound
    smsc.send_mo("p1", USER, OURS, udh8(99, 3, 1) + gsm7("only the first "), 0, UDHI)
    smsc.send_mo("p3", USER, OURS, udh8(99, 3, 3) + gsm7("and the last"), 0, UDHI)
    await wait_resps(smsc, "p1")
    await wait_resps(smsc, "p3")
    assert await pulled(store) == []
    router.part_timeout_s = 0.01  # as if the configured wait had passed
    await asyncio.sleep(0.02)
    assert await router.sweep() == 1
    assert [(m["text"], m["smsCount"]) for m in await pulled(store)] == [("only the first and the last", 2)]


async def test_a_declared_account_not_made_yet_is_not_acknowledged(store: Store, make_smsc: Any) -> None:
    """A worker that starts before ``serve`` made the config's accounts refuses the MO; the SMSC keeps it."""
    smsc = make_smsc()
    settings = Settings(
        accounts=[AccountConfig("late", password="x", inbound_numbers=[OURS])],
        smpp=SmppConfig(connectors=[SmppConnectorConfig("smsc", SYSTEM_ID, PASSWORD, port=smsc.port)]),
    )
    router = InboundSms(settings, store)
    channel = SmppChannel(settings.smpp, no_receipts, store, None, inbound=router.receive)
    await channel.start()
    try:
        assert await channel.wait_bound(10)
        smsc.send_mo("m1", USER, OURS, gsm7("wait for me"))
        refused = (await wait_resps(smsc, "m1", status=None))[0]
        assert refused["status"] == 0x64  # ESME_RX_T_APPN, again every time until the account exists
        await store.create_account("late", None, "s", "config")
        await wait_resps(smsc, "m1")  # the SMSC's next try finds the account
        assert [m["text"] for m in await pulled(store, "late")] == ["wait for me"]
    finally:
        await channel.close()


async def test_undecodable_and_non_message_deliver_sm_are_answered_and_not_stored(inbound: Any) -> None:
    smsc, store, gate, _router, metrics = inbound
    smsc.send_mo("cut", USER, OURS, bytes((9, 0, 3, 1)) + b"x", 0, UDHI)  # a UDH longer than the user data
    smsc.send_mo("note", USER, OURS, b"", 0, 0x20)  # an intermediate delivery notification
    (refused,) = await wait_resps(smsc, "cut", status=None)
    assert refused["status"] == 0x65  # ESME_RX_P_APPN: permanent, the SMSC does not send it again
    await wait_resps(smsc, "note")
    smsc.send_mo("ok", USER, OURS, gsm7("after them"))
    await wait_resps(smsc, "ok")
    assert [m["text"] for m in await pulled(store)] == ["after them"]
    text = metrics.render().decode()
    assert 'omnirelay_smpp_inbound_total{connector="smsc",result="undecodable"} 1.0' in text
    assert 'omnirelay_smpp_inbound_total{connector="smsc",result="ignored"} 1.0' in text
    assert gate.calls == 1


async def test_transmitter_mode_takes_mos_on_its_receiver_bind(store: Store, make_smsc: Any) -> None:
    await store.create_account("a", None, "s", "config")
    smsc = make_smsc()
    connector = SmppConnectorConfig("smsc", SYSTEM_ID, PASSWORD, port=smsc.port, bind_mode="transmitter")
    settings = Settings(accounts=[AccountConfig("a", password="x", inbound_numbers=[OURS])],
                        smpp=SmppConfig(connectors=[connector]))
    channel = SmppChannel(settings.smpp, no_receipts, store, None, inbound=InboundSms(settings, store).receive)
    await channel.start()
    try:
        assert await channel.wait_bound(10)
        assert smsc.records("bind_receiver") and not smsc.records("bind_transceiver")
        smsc.send_mo("m1", USER, OURS, gsm7("over the RX bind"))
        await wait_resps(smsc, "m1")
        assert [m["text"] for m in await pulled(store, "a")] == ["over the RX bind"]
    finally:
        await channel.close()
