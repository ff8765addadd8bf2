"""The SMPP connector against a real SMSC: node-smpp (``peers/smsc/smsc.js``) on loopback.

The PDUs are checked where they arrive, in the SMSC's own record of what it received. Receipts go to an
in-memory sink; there is no store (the rate cap then uses the in-process bucket).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from omnirelay.config import SmppConfig, SmppConnectorConfig, SmppRoute
from omnirelay.connectors.base import SubmitResult
from omnirelay.connectors.smpp.connector import SmppChannel
from omnirelay.connectors.smpp.text import gsm7_decode
from omnirelay.domain.delivery import Receipt, Submission
from omnirelay.metrics import Metrics
from omnirelay.store.postgres import PostgresStore
from peers.smsc.harness import PASSWORD, SYSTEM_ID, Smsc
from tests.pg import create_database, drop_database


class Sink:
    """An in-memory receipt sink (what the store's ``record_receipts`` is in the gateway)."""

    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.calls = 0
        self.fail_first = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, receipts: list[Receipt]) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("database away")
        self.receipts.extend(receipts)

    def by_id(self) -> dict[str, Receipt]:
        return {r.provider_id: r for r in self.receipts}


def connector(smsc: Smsc, name: str = "smsc", **options: Any) -> SmppConnectorConfig:
    return SmppConnectorConfig(name=name, system_id=SYSTEM_ID, password=PASSWORD, port=smsc.port, **options)


@pytest.fixture
async def make_channel() -> AsyncIterator[Callable[..., Any]]:
    channels: list[SmppChannel] = []

    async def make(
        *connectors: SmppConnectorConfig, sink: Sink | None = None, bound: bool = True, **options: Any
    ) -> tuple[SmppChannel, Sink]:
        sink = sink or Sink()
        metrics = options.pop("metrics", None)
        channel = SmppChannel(SmppConfig(connectors=list(connectors), **options), sink, None, metrics)
        channels.append(channel)
        await channel.start()
        if bound:
            assert await channel.wait_bound(10)
        return channel, sink

    yield make
    for channel in channels:
        await channel.close()


def sms(i: int, address: str, text: str, sender: str | None = "InfoSMS", validity_s: float = 3600) -> Submission:
    return Submission(i, 0, 1, f"msg-{i}", "SMS", sender, address, {"sms": {"text": text}}, validity_s)


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def text_of(record: dict[str, Any]) -> str:
    octets = bytes.fromhex(record["short_message"])
    if record["esm_class"] & 0x40:
        octets = octets[octets[0] + 1 :]
    return octets.decode("utf-16-be") if record["data_coding"] == 8 else gsm7_decode(octets)


# --- content and PDUs at the SMSC ---------------------------------------------------------------------


async def test_short_message_pdu_and_delivered_receipt(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    channel, sink = await make_channel(connector(smsc))
    [result] = await channel.submit([sms(1, "+41793026727", "Hello {world} €5", validity_s=1800)])
    assert result == SubmitResult("smsc:1000")
    [pdu] = smsc.submits()
    assert (pdu["source_addr"], pdu["source_addr_ton"], pdu["source_addr_npi"]) == ("InfoSMS", 5, 0)
    assert (pdu["destination_addr"], pdu["dest_addr_ton"], pdu["dest_addr_npi"]) == ("41793026727", 1, 1)
    assert (pdu["data_coding"], pdu["esm_class"], pdu["registered_delivery"]) == (0, 0, 1)
    assert pdu["validity_period"] == "000000003000000R"
    assert bytes.fromhex(pdu["short_message"]) == b"Hello \x1b\x28world\x1b\x29 \x1b\x655"
    [receipt] = await until(lambda: sink.receipts, what="the receipt")
    assert (receipt.channel, receipt.provider_id, receipt.outcome, receipt.error) == (
        "SMS",
        "smsc:1000",
        "DELIVERED",
        None,
    )
    # acknowledged after the sink stored it
    await until(lambda: smsc.records("deliver_sm_resp"), what="deliver_sm_resp")
    assert smsc.records("deliver_sm_resp")[0]["status"] == 0


async def test_long_message_three_parts(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    channel, sink = await make_channel(connector(smsc))
    text = "".join(f"Part of a long text number {i:03d} [ok]. " for i in range(11))  # extension chars too
    assert 306 < len(text) + text.count("[") + text.count("]") <= 459
    [result] = await channel.submit([sms(1, "41793026727", text)])
    pdus = smsc.submits()
    assert len(pdus) == 3
    refs = set()
    for seq, pdu in enumerate(pdus, 1):
        udh = bytes.fromhex(pdu["short_message"])[:6]
        assert udh[:3] == b"\x05\x00\x03" and udh[4:] == bytes((3, seq))
        refs.add(udh[3])
        assert pdu["esm_class"] == 0x40 and pdu["data_coding"] == 0
        assert pdu["registered_delivery"] == (1 if seq == 3 else 0)
        assert len(bytes.fromhex(pdu["short_message"])) <= 6 + 153
    assert len(refs) == 1
    assert "".join(text_of(p) for p in pdus) == text
    # the provider id is the last part's: its receipt is the one that comes
    assert result.provider_id == f"smsc:{pdus[-1]['message_id']}"
    await until(lambda: sink.receipts, what="the receipt")
    assert [r.provider_id for r in sink.receipts] == [result.provider_id]


async def test_ucs2_and_emoji(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    channel, _ = await make_channel(connector(smsc))
    cyrillic = "Привет, мир"
    emoji = "Smile 😀 " * 12  # 96 UTF-16 code units: 2 parts, no surrogate pair split
    results = await channel.submit([sms(1, "41793026727", cyrillic), sms(2, "41793026728", emoji)])
    assert all(r.provider_id for r in results)
    first, *rest = smsc.submits()
    assert (first["data_coding"], first["esm_class"], first["registered_delivery"]) == (8, 0, 1)
    assert bytes.fromhex(first["short_message"]) == cyrillic.encode("utf-16-be")
    assert len(rest) == 2
    assert [(p["data_coding"], p["esm_class"], p["registered_delivery"]) for p in rest] == [(8, 0x40, 0), (8, 0x40, 1)]
    for p in rest:
        assert len(bytes.fromhex(p["short_message"])) - 6 <= 134
    assert "".join(text_of(p) for p in rest) == emoji


async def test_sender_forms_ton_npi(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    channel, _ = await make_channel(connector(smsc))
    await channel.submit(
        [
            sms(1, "41793026727", "a", sender="12345"),
            sms(2, "41793026727", "b", sender="+41793026000"),
            sms(3, "41793026727", "c", sender="41793026000"),
            sms(4, "41793026727", "d", sender="Shop"),
        ]
    )
    got = [(p["source_addr"], p["source_addr_ton"], p["source_addr_npi"]) for p in smsc.submits()]
    assert got == [("12345", 3, 0), ("41793026000", 1, 1), ("41793026000", 1, 1), ("Shop", 5, 0)]


# --- receipts ----------------------------------------------------------------------------------------


async def test_delivered_and_undeliverable_receipts(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(fail="0$")
    channel, sink = await make_channel(connector(smsc))
    results = await channel.submit([sms(i, f"4179302672{i}", f"text {i}") for i in range(4)])
    ids = [r.provider_id for r in results]
    assert ids == ["smsc:1000", "smsc:1001", "smsc:1002", "smsc:1003"]
    await until(lambda: len(sink.receipts) == 4, what="4 receipts")
    by_id = sink.by_id()
    assert by_id["smsc:1000"].outcome == "UNDELIVERABLE"
    assert by_id["smsc:1000"].error == "EC_UNKNOWN_SUBSCRIBER"  # err:001, the MAP error
    assert by_id["smsc:1000"].detail == "stat:UNDELIV err:001"
    assert {by_id[i].outcome for i in ids[1:]} == {"DELIVERED"}


async def test_text_only_receipts_and_hex_ids(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(dlr_tlvs=0, id_hex=1, id_start=0xABC00)
    channel, sink = await make_channel(connector(smsc))
    [result] = await channel.submit([sms(1, "41793026727", "hex")])
    assert result.provider_id == "smsc:abc00"
    await until(lambda: sink.receipts, what="the receipt")
    assert sink.receipts[0].provider_id == "smsc:abc00" and sink.receipts[0].outcome == "DELIVERED"


async def test_receipt_acknowledged_only_after_the_sink_stored_it(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    sink = Sink()
    sink.gate = asyncio.Event()
    channel, _ = await make_channel(connector(smsc), sink=sink)
    await channel.submit([sms(1, "41793026727", "wait")])
    await until(lambda: sink.calls, what="the sink to be called")
    await asyncio.sleep(0.2)
    assert smsc.records("deliver_sm_resp") == []
    sink.gate.set()
    await until(lambda: smsc.records("deliver_sm_resp"), what="deliver_sm_resp")
    assert len(sink.receipts) == 1


async def test_sink_failure_makes_the_smsc_send_again(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    sink = Sink()
    sink.fail_first = 1
    channel, _ = await make_channel(connector(smsc), sink=sink)
    [result] = await channel.submit([sms(1, "41793026727", "again")])
    await until(lambda: sink.receipts, what="the receipt, the second time")
    assert [r.provider_id for r in sink.receipts] == [result.provider_id]
    # the second deliver_sm_resp goes out after the sink stored the receipt: wait for the SMSC to log it
    answers = await until(lambda: len(smsc.records("deliver_sm_resp")) >= 2 and smsc.records("deliver_sm_resp"),
                          what="both deliver_sm_resp at the SMSC")
    assert [r["status"] for r in answers] == [0x64, 0]  # ESME_RX_T_APPN, then OK


async def test_receipt_before_submit_sm_resp(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(resp_delay_ms=300)  # the DLR overtakes the submit_sm_resp
    channel, sink = await make_channel(connector(smsc))
    [result] = await channel.submit([sms(1, "41793026727", "race")])
    assert result.provider_id == "smsc:1000"
    assert [r.provider_id for r in sink.receipts] == ["smsc:1000"]


# --- refusals ----------------------------------------------------------------------------------------


async def test_submit_refused_names_the_smpp_status(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(reject="^999")
    channel, _ = await make_channel(connector(smsc))
    bad, good = await channel.submit([sms(1, "999123", "x"), sms(2, "41793026727", "y")])
    assert bad.provider_id is None
    [report] = bad.reports
    assert (report.outcome, report.error, report.after_s) == ("REJECTED", "EC_INVALID_DESTINATION_ADDRESS", 0.0)
    assert report.detail is not None and "ESME_RINVDSTADR (0x0B)" in report.detail
    assert good.provider_id == "smsc:1000"


async def test_message_without_text_is_refused_alone(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    channel, _ = await make_channel(connector(smsc))
    bad = Submission(1, 0, 1, "m1", "SMS", "InfoSMS", "41793026727", {"sms": {}}, 60)
    results = await channel.submit([bad, sms(2, "41793026727", "fine")])
    assert results[0].reports[0].outcome == "REJECTED" and results[0].provider_id is None
    assert results[1].provider_id == "smsc:1000"


# --- throttling --------------------------------------------------------------------------------------


async def test_throttled_submits_are_sent_again_exactly_once(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(tps=25)
    metrics = Metrics()
    channel, _ = await make_channel(connector(smsc, window_size=20), metrics=metrics)
    channel.hold_seconds = 15
    n = 60
    results = await channel.submit([sms(i, "41793026727", f"burst {i}") for i in range(n)])
    assert all(r.provider_id and not r.reports for r in results)
    accepted = smsc.submits(status=0)
    assert sorted(text_of(p) for p in accepted) == sorted(f"burst {i}" for i in range(n))  # each exactly once
    assert len({r.provider_id for r in results}) == n
    throttled = smsc.submits(status=0x58)
    assert throttled, "the SMSC should have throttled some"
    assert metrics.registry.get_sample_value("omnirelay_smpp_throttles_total", {"connector": "smsc"}) == len(throttled)
    assert metrics.registry.get_sample_value("omnirelay_smpp_submits_total", {"connector": "smsc", "result": "ok"}) == n


async def test_throttled_past_the_hold_comes_back_as_retry(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(tps=10)
    channel, _ = await make_channel(connector(smsc))
    channel.hold_seconds = 0.3
    batch = [sms(i, "41793026727", f"held {i}") for i in range(30)]
    results = await channel.submit(batch)
    retry = [s for s, r in zip(batch, results, strict=True) if r.reports]
    assert retry and all(r.reports[0].outcome == "RETRY" and r.reports[0].after_s > 0 for r in results if r.reports)
    assert all(r.provider_id for r in results if not r.reports)
    accepted = {text_of(p) for p in smsc.submits(status=0)}
    assert not accepted & {s.content["sms"]["text"] for s in retry}  # a RETRY was never taken by the SMSC
    # the engine submits them again later: each ends at the SMSC exactly once
    channel.hold_seconds = 10
    while retry:
        await asyncio.sleep(0.2)
        again = await channel.submit(retry)
        retry = [s for s, r in zip(retry, again, strict=True) if r.reports]
    texts = sorted(text_of(p) for p in smsc.submits(status=0))
    assert texts == sorted(s.content["sms"]["text"] for s in batch)


# --- connections -------------------------------------------------------------------------------------


async def test_smsc_killed_and_restarted(make_smsc: Any, make_channel: Any) -> None:
    """Nothing lost, nothing sent twice: what the SMSC took unanswered is reported unknown and not sent again;
    what was still queued goes out once the bind is back; what comes while it is away is handed back."""
    smsc = make_smsc(resp_delay_ms=400)
    channel, sink = await make_channel(connector(smsc, window_size=1, reconnect_max_seconds=0.5))
    channel.hold_seconds = 10
    link = channel.connectors["smsc"].tx
    # A0 is written (window 1) and unanswered when the SMSC dies; A1..A4 wait in the queue
    batch_a = asyncio.create_task(channel.submit([sms(i, "41793026727", f"A{i}") for i in range(5)]))
    await until(lambda: len(smsc.submits()) == 1, what="A0 at the SMSC")
    smsc.kill()
    smsc.start(resp_delay_ms=0, id_start=2000)
    results_a = await batch_a
    assert results_a[0] == SubmitResult(None, [])  # state unknown: no id, no report, never sent again
    assert [r.provider_id for r in results_a[1:]] == [f"smsc:{2000 + i}" for i in range(4)]
    assert link.binds == 2
    answered = {r.provider_id for r in results_a[1:]}
    await until(lambda: {r.provider_id for r in sink.receipts} >= answered, what="A1..A4's receipts")
    # B comes while the SMSC is away: handed back at once (RETRY), nothing written
    smsc.kill()
    await until(lambda: not link.bound.is_set(), what="the bind to drop")
    started = time.monotonic()
    batch_b = [sms(10 + i, "41793026727", f"B{i}") for i in range(3)]
    results_b = await channel.submit(batch_b)
    assert time.monotonic() - started < 0.5
    assert all(r.provider_id is None and r.reports[0].outcome == "RETRY" for r in results_b)
    assert "not bound" in (results_b[0].reports[0].detail or "")
    smsc.start(id_start=3000)
    assert await channel.wait_bound(10)
    results_b = await channel.submit(batch_b)  # what the engine does after the RETRY's delay
    assert [r.provider_id for r in results_b] == ["smsc:3000", "smsc:3001", "smsc:3002"]
    texts = sorted(text_of(p) for p in smsc.submits())
    assert texts == sorted([f"A{i}" for i in range(5)] + [f"B{i}" for i in range(3)])  # each exactly once
    answered = {r.provider_id for r in results_b}
    await until(lambda: {r.provider_id for r in sink.receipts} >= answered, what="B's receipts")


async def test_retry_while_unbound_is_never_sent_later(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    channel, _ = await make_channel(connector(smsc, reconnect_max_seconds=0.5))
    smsc.kill()
    await until(lambda: not channel.connectors["smsc"].tx.bound.is_set(), what="the bind to drop")
    [result] = await channel.submit([sms(1, "41793026727", "never")])
    assert result.provider_id is None and result.reports[0].outcome == "RETRY"
    smsc.start()
    assert await channel.wait_bound(10)
    await asyncio.sleep(0.3)
    assert [text_of(p) for p in smsc.submits()] == []


async def test_response_timeout_drops_the_connection(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(resp_delay_ms=3000)
    channel, _ = await make_channel(connector(smsc, response_timeout_seconds=0.4, reconnect_max_seconds=0.5))
    started = time.monotonic()
    [result] = await channel.submit([sms(1, "41793026727", "slow")])
    assert result == SubmitResult(None, [])
    assert time.monotonic() - started < 2.5
    assert await channel.wait_bound(5)
    assert len(smsc.submits()) == 1


async def test_start_does_not_fail_when_the_smsc_is_down(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    smsc.kill()
    channel, _ = await make_channel(connector(smsc, reconnect_max_seconds=0.3), bound=False)
    await asyncio.sleep(0.5)
    smsc.start()
    assert await channel.wait_bound(10)
    [result] = await channel.submit([sms(1, "41793026727", "late")])
    assert result.provider_id == "smsc:1000"


async def test_wrong_password_keeps_retrying(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    bad = SmppConnectorConfig(
        name="bad", system_id=SYSTEM_ID, password="nope", port=smsc.port, reconnect_max_seconds=0.2
    )
    channel, _ = await make_channel(bad, bound=False)
    await until(lambda: len(smsc.records("bind_transceiver")) >= 2, what="two bind attempts")
    assert {r["status"] for r in smsc.records("bind_transceiver")} == {0x0D}
    assert not channel.connectors["bad"].tx.bound.is_set()


async def test_enquire_link_both_ways(make_smsc: Any, make_channel: Any) -> None:
    quiet, chatty = make_smsc(), make_smsc(enquire_ms=100)
    await make_channel(connector(quiet, "quiet", enquire_link_seconds=0.2), connector(chatty, "chatty"))
    await until(lambda: len(quiet.records("enquire_link")) >= 2, what="our enquire_link when idle")
    resps = await until(lambda: chatty.records("enquire_link_resp"), what="our answer to the SMSC's enquire_link")
    assert resps[0]["status"] == 0
    assert chatty.records("enquire_link") == []  # never idle: the SMSC's own enquire_link keeps it busy


async def test_close_unbinds(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    channel, _ = await make_channel(connector(smsc))
    await channel.close()
    assert smsc.records("unbind")


# --- routing, transmitter mode, metrics ---------------------------------------------------------------


async def test_routing_and_namespaced_provider_ids(make_smsc: Any, make_channel: Any) -> None:
    a, b = make_smsc(), make_smsc()  # both start their ids at 1000
    channel, sink = await make_channel(
        connector(a, "a"), connector(b, "b"), routes=[SmppRoute(prefix="49", connector="b")], default_connector="a"
    )
    results = await channel.submit([sms(1, "+4915112345678", "to b"), sms(2, "41793026727", "to a")])
    assert [r.provider_id for r in results] == ["b:1000", "a:1000"]
    assert [text_of(p) for p in a.submits()] == ["to a"]
    assert [text_of(p) for p in b.submits()] == ["to b"]
    await until(lambda: len(sink.receipts) == 2, what="both receipts")
    assert sorted(r.provider_id for r in sink.receipts) == ["a:1000", "b:1000"]
    assert channel.route("4930") == "b" and channel.route("33") == "a"


async def test_transmitter_mode_takes_receipts_on_a_receiver_bind(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    channel, sink = await make_channel(connector(smsc, bind_mode="transmitter"))
    assert smsc.records("bind_transmitter") and smsc.records("bind_receiver")
    [result] = await channel.submit([sms(1, "41793026727", "tx")])
    await until(lambda: sink.receipts, what="the receipt over the receiver bind")
    assert sink.receipts[0].provider_id == result.provider_id


async def test_metrics(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc(fail="0$")
    metrics = Metrics()
    channel, sink = await make_channel(connector(smsc), metrics=metrics)
    await channel.submit([sms(1, "41793026727", "x"), sms(2, "41793026720", "y")])
    await until(lambda: len(sink.receipts) == 2, what="receipts")
    value = metrics.registry.get_sample_value
    assert value("omnirelay_smpp_bound", {"connector": "smsc"}) == 1
    assert value("omnirelay_smpp_window_in_use", {"connector": "smsc"}) == 0
    assert value("omnirelay_smpp_submits_total", {"connector": "smsc", "result": "ok"}) == 2
    assert value("omnirelay_smpp_receipts_total", {"connector": "smsc", "stat": "DELIVRD"}) == 1
    assert value("omnirelay_smpp_receipts_total", {"connector": "smsc", "stat": "UNDELIV"}) == 1
    smsc.kill()
    await until(lambda: value("omnirelay_smpp_bound", {"connector": "smsc"}) == 0, what="bound 0")


async def test_rate_cap_in_process(make_smsc: Any, make_channel: Any) -> None:
    smsc = make_smsc()
    channel, _ = await make_channel(connector(smsc, max_submits_per_second=20))
    channel.hold_seconds = 10
    started = time.monotonic()
    results = await channel.submit([sms(i, "41793026727", f"r{i}") for i in range(40)])
    elapsed = time.monotonic() - started
    assert all(r.provider_id for r in results)
    assert 0.8 < elapsed < 3.0  # a burst of 20, then 20 a second
    assert not smsc.submits(status=0x58)


async def test_rate_cap_is_shared_by_workers_on_one_database(make_smsc: Any) -> None:
    """Two workers (two channels, two store connections) on one PostgreSQL database share the connector's cap:
    80 messages at 20 a second take about 3 s, where each worker's own bucket would let them through in 1 s."""
    smsc = make_smsc()
    url = await create_database()
    stores = [await PostgresStore.open(url) for _ in range(2)]
    config = SmppConfig(connectors=[connector(smsc, max_submits_per_second=20)])
    workers = [SmppChannel(config, Sink(), store, None) for store in stores]
    try:
        for worker in workers:
            worker.hold_seconds = 10
            await worker.start()
            assert await worker.wait_bound(10)
        started = time.monotonic()
        batches = await asyncio.gather(
            *(w.submit([sms(n * 100 + i, "41793026727", f"{n}-{i}") for i in range(40)]) for n, w in enumerate(workers))
        )
        elapsed = time.monotonic() - started
        assert all(r.provider_id for batch in batches for r in batch)
        assert len(smsc.submits(status=0)) == 80
        assert 2.4 < elapsed < 6.0, elapsed
    finally:
        for worker in workers:
            await worker.close()
        for store in stores:
            await store.close()
        await drop_database(url)
