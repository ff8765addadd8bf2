"""The ESME's framing and answers on one connection, fed bytes directly (no network, no SMSC)."""

from __future__ import annotations

import asyncio
import struct

from omnirelay.config import SmppConfig, SmppConnectorConfig
from omnirelay.connectors.smpp import pdu as pdus
from omnirelay.connectors.smpp.connector import SmppChannel
from omnirelay.connectors.smpp.session import QUEUED, _Batch, _Part, _Session
from omnirelay.domain.delivery import Receipt


class FakeTransport:
    def __init__(self) -> None:
        self.sent = bytearray()
        self.aborted = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True

    def pdus(self) -> list[tuple[int, int, int, bytes]]:
        out, offset = [], 0
        while offset < len(self.sent):
            length, command_id, status, sequence = struct.unpack_from(">IIII", self.sent, offset)
            out.append((command_id, status, sequence, bytes(self.sent[offset + 16 : offset + length])))
            offset += length
        return out


async def _session() -> tuple[_Session, FakeTransport, list[list[Receipt]]]:
    stored: list[list[Receipt]] = []

    async def sink(receipts: list[Receipt]) -> None:
        stored.append(receipts)

    channel = SmppChannel(SmppConfig(connectors=[SmppConnectorConfig(name="c", system_id="s", password="p")]), sink)
    session = _Session(channel.connectors["c"].tx)
    transport = FakeTransport()
    session.connection_made(transport)  # type: ignore[arg-type]
    session.bound = True
    return session, transport, stored


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_answers_enquire_link_even_when_split_across_reads() -> None:
    session, transport, _ = await _session()
    raw = pdus.pdu(pdus.ENQUIRE_LINK, 41)
    session.data_received(raw[:5])
    session.data_received(raw[5:] + pdus.pdu(pdus.ENQUIRE_LINK, 42)[:10])
    await _settle()
    assert transport.pdus() == [(pdus.ENQUIRE_LINK | pdus.RESP, 0, 41, b"")]
    session.data_received(pdus.pdu(pdus.ENQUIRE_LINK, 42)[10:])
    await _settle()
    assert [p[2] for p in transport.pdus()] == [41, 42]
    session.connection_lost(None)


async def test_unknown_command_gets_generic_nack() -> None:
    session, transport, _ = await _session()
    session.data_received(pdus.pdu(0x00000999, 7))
    await _settle()
    assert transport.pdus() == [(pdus.GENERIC_NACK, pdus.ESME_RINVCMDID, 7, b"")]
    assert not transport.aborted
    session.connection_lost(None)


async def test_garbage_length_nacks_and_drops_the_connection() -> None:
    session, transport, _ = await _session()
    session.data_received(struct.pack(">IIII", 3, 0, 0, 9))
    await _settle()
    assert transport.pdus()[0][:3] == (pdus.GENERIC_NACK, pdus.ESME_RINVCMDLEN, 9)
    assert transport.aborted
    session.connection_lost(None)


async def test_generic_nack_fails_the_outstanding_submit() -> None:
    session, transport, _ = await _session()
    batch = _Batch()
    batch.left = 1
    part = _Part(b"body", batch)
    assert part.state == QUEUED
    session.submit(part)
    await _settle()
    [(command_id, _, sequence, _)] = transport.pdus()
    assert command_id == pdus.SUBMIT_SM
    session.data_received(pdus.pdu(pdus.GENERIC_NACK, sequence, status=pdus.ESME_RINVCMDLEN))
    assert (part.state, part.status) == ("failed", pdus.ESME_RINVCMDLEN)
    assert batch.done.is_set()
    session.connection_lost(None)


async def test_connection_lost_makes_written_submits_unknown() -> None:
    session, _, _ = await _session()
    batch = _Batch()
    batch.left = 2
    parts = [_Part(b"a", batch), _Part(b"b", batch)]
    for part in parts:
        session.submit(part)
    session.connection_lost(ConnectionResetError())
    assert [p.state for p in parts] == ["unknown", "unknown"]
    assert batch.done.is_set()


async def test_mo_message_is_acknowledged_at_once_and_receipt_after_the_sink() -> None:
    session, transport, stored = await _session()
    mo = (
        b"\0\x01\x01"
        + b"41793026727\0"
        + b"\x00\x00"
        + b"1234\0"
        + bytes((0, 0, 0))
        + b"\0\0"
        + bytes((0, 0, 0, 0, 2))
        + b"hi"
    )
    session.data_received(pdus.pdu(pdus.DELIVER_SM, 5, mo))
    await _settle()
    assert transport.pdus() == [(pdus.DELIVER_SM | pdus.RESP, 0, 5, b"\0")]
    text = b"id:77 sub:001 dlvrd:001 submit date:2611271259 done date:2611271259 stat:DELIVRD err:000"
    receipt = (
        b"\0\x01\x01"
        + b"41793026727\0"
        + b"\x05\x00"
        + b"InfoSMS\0"
        + bytes((0x04, 0, 0))
        + b"\0\0"
        + bytes((0, 0, 0, 0, len(text)))
        + text
    )
    session.data_received(pdus.pdu(pdus.DELIVER_SM, 6, receipt))
    await _settle()
    assert len(transport.pdus()) == 1  # not acknowledged before the sink stored it
    await session.connector._flush_receipts()  # what the connector's flusher task does
    await _settle()
    assert [r.provider_id for batch in stored for r in batch] == ["c:77"]
    assert transport.pdus()[-1] == (pdus.DELIVER_SM | pdus.RESP, 0, 6, b"\0")
    session.connection_lost(None)
