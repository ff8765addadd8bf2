"""The SMPP 3.4 PDU codec, checked against smpplib's independent decoder where it has one."""

from __future__ import annotations

import struct
from typing import Any

import pytest
import smpplib.smpp

from omnirelay.connectors.smpp import pdu as pdus
from omnirelay.connectors.smpp.text import destination_address, message_parts, source_address, validity_period


class _Client:
    """What smpplib's PDU classes ask of a client while parsing."""

    sequence = 0
    allow_unknown_opt_params = True

    def next_sequence(self) -> int:
        return 1


def _smpplib_parse(raw: bytes) -> Any:
    return smpplib.smpp.parse_pdu(raw, client=_Client())


def test_header_round_trip() -> None:
    raw = pdus.pdu(pdus.ENQUIRE_LINK, 7)
    assert raw == struct.pack(">IIII", 16, 0x15, 0, 7)
    assert pdus.parse_header(raw) == (16, 0x15, 0, 7)
    resp = pdus.pdu(pdus.DELIVER_SM | pdus.RESP, 9, b"\0", pdus.ESME_RX_T_APPN)
    assert pdus.parse_header(resp[:16]) == (17, 0x80000005, 0x64, 9)


def test_bind_transceiver_body() -> None:
    raw = pdus.pdu(pdus.BIND_TRANSCEIVER, 1, pdus.bind("omni", "secret", "OMNI"))
    parsed = _smpplib_parse(raw)
    assert parsed.command == "bind_transceiver"
    assert (parsed.system_id, parsed.password, parsed.system_type) == (b"omni", b"secret", b"OMNI")
    assert parsed.interface_version == 0x34


def test_submit_sm_as_smpplib_reads_it() -> None:
    parts = message_parts("x" * 200, 0x42)
    body = pdus.submit_sm_body(
        source_address("InfoSMS"),
        destination_address("+41793026727"),
        parts.esm_class,
        validity_period(3600),
        1,
        parts.data_coding,
        parts.payloads[1],
    )
    parsed = _smpplib_parse(pdus.pdu(pdus.SUBMIT_SM, 5, body))
    assert parsed.command == "submit_sm" and parsed.sequence == 5
    assert (parsed.source_addr_ton, parsed.source_addr_npi, parsed.source_addr) == (5, 0, b"InfoSMS")
    assert (parsed.dest_addr_ton, parsed.dest_addr_npi, parsed.destination_addr) == (1, 1, b"41793026727")
    assert parsed.esm_class == 0x40
    assert parsed.registered_delivery == 1
    assert parsed.data_coding == 0
    assert parsed.validity_period == b"000000010000000R"
    assert parsed.short_message == bytes((5, 0, 3, 0x42, 2, 2)) + b"x" * 47


def _deliver_body(text: bytes, esm_class: int = 0x04, data_coding: int = 0, tlvs: bytes = b"") -> bytes:
    return (
        b"\0"
        + b"\x01\x01"
        + b"41793026727\0"
        + b"\x05\x00"
        + b"InfoSMS\0"
        + bytes((esm_class, 0, 0))
        + b"\0\0"
        + bytes((0, 0, data_coding, 0, len(text)))
        + text
        + tlvs
    )


def test_parse_deliver_sm_with_tlvs() -> None:
    tlvs = struct.pack(">HH", 0x001E, 5) + b"1a2f\0" + struct.pack(">HHB", 0x0427, 1, 2)
    d = pdus.parse_deliver_sm(_deliver_body(b"id:1a2f stat:DELIVRD", tlvs=tlvs))
    assert d.is_receipt
    assert (d.source_addr, d.destination_addr, d.data_coding) == ("41793026727", "InfoSMS", 0)
    assert d.short_message == b"id:1a2f stat:DELIVRD"
    assert d.tlvs == {0x001E: b"1a2f\0", 0x0427: b"\x02"}


def test_parse_mo_is_not_a_receipt() -> None:
    assert not pdus.parse_deliver_sm(_deliver_body(b"hi", esm_class=0)).is_receipt
    assert not pdus.parse_deliver_sm(_deliver_body(b"\x05\x00\x03\x01\x02\x01hi", esm_class=0x40)).is_receipt
    assert pdus.parse_deliver_sm(_deliver_body(b"id:1", esm_class=0x44)).is_receipt


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\0\x01\x01",  # cut in source_addr
        _deliver_body(b"hello")[:-2],  # short_message shorter than sm_length
        _deliver_body(b"x", tlvs=struct.pack(">HH", 0x001E, 9) + b"12"),  # TLV cut short
    ],
)
def test_truncated_deliver_sm_raises(body: bytes) -> None:
    with pytest.raises(pdus.PduError):
        pdus.parse_deliver_sm(body)


def test_status_names() -> None:
    assert pdus.status_name(0x0B) == "ESME_RINVDSTADR (0x0B)"
    assert pdus.status_name(0x58) == "ESME_RTHROTTLED (0x58)"
    assert pdus.status_name(0x400) == "unknown status (0x400)"


def test_cstring() -> None:
    assert pdus.cstring("abc") == b"abc\0"
    assert pdus.read_cstring(b"ab\0cd\0", 3) == (b"cd", 6)
    with pytest.raises(pdus.PduError):
        pdus.read_cstring(b"abc", 0)
