"""Delivery receipt parsing (text and TLVs) and the mapping of SMPP answers to OMNI outcomes and errors."""

from __future__ import annotations

import pytest

from omnirelay.connectors.smpp.pdu import DeliverSm
from omnirelay.connectors.smpp.receipts import (
    MAP_ERRORS,
    STATS,
    SUBMIT_ERROR_DEFAULT,
    SUBMIT_ERRORS,
    ParsedReceipt,
    normalise_id,
    parse_receipt,
    parse_receipt_text,
    receipt_for,
    submit_error,
)
from omnirelay.domain import catalogue
from omnirelay.domain.failover import DEFAULTS


def _deliver(text: str | bytes, data_coding: int = 0, tlvs: dict[int, bytes] | None = None) -> DeliverSm:
    octets = text if isinstance(text, bytes) else text.encode("latin-1")
    return DeliverSm("41793026727", "InfoSMS", 0x04, data_coding, octets, tlvs or {})


def test_appendix_b_text() -> None:
    text = (
        "id:1000 sub:001 dlvrd:001 submit date:2611271259 done date:2611271300 stat:DELIVRD err:000 "
        "text:Hello err:999 stat:UNDELIV"
    )
    assert parse_receipt_text(text) == {
        "id": "1000",
        "sub": "001",
        "dlvrd": "001",
        "submit date": "2611271259",
        "done date": "2611271300",
        "stat": "DELIVRD",
        "err": "000",
        "text": "Hello err:999 stat:UNDELIV",
    }


def test_jasmin_style_without_sub_dlvrd_text() -> None:
    text = (
        "id:2d9e1c5e-7a4b-4f0e-9a1b-0c3d5e7f9a1b submit date:261127125901 done date:261127125902 stat:DELIVRD err:000"
    )
    fields = parse_receipt_text(text)
    assert fields["id"] == "2d9e1c5e-7a4b-4f0e-9a1b-0c3d5e7f9a1b"
    assert fields["stat"] == "DELIVRD"
    assert fields["submit date"] == "261127125901"
    assert "sub" not in fields and "text" not in fields


def test_case_and_spacing_tolerated() -> None:
    fields = parse_receipt_text("ID:00AB12 Sub:1 Stat: undeliv Err:27")
    assert (fields["id"], fields["stat"], fields["err"]) == ("00AB12", "undeliv", "27")
    parsed = parse_receipt(_deliver("ID:00AB12 Sub:1 Stat:undeliv Err:27"))
    assert parsed == ParsedReceipt("ab12", "UNDELIV", "27")


def test_missing_everything() -> None:
    assert parse_receipt_text("") == {}
    assert parse_receipt(_deliver("garbage")) == ParsedReceipt("", "", "")
    assert receipt_for(ParsedReceipt("", "DELIVRD", ""), "c") is None


def test_tlvs_win_over_text() -> None:
    tlvs = {0x001E: b"0000AB\0", 0x0427: bytes((5,))}
    parsed = parse_receipt(_deliver("id:99 stat:DELIVRD err:000", tlvs=tlvs))
    assert parsed == ParsedReceipt("ab", "UNDELIV", "000")


def test_network_error_code_tlv_when_text_has_no_err() -> None:
    tlvs = {0x0427: b"\x05", 0x0423: b"\x03\x00\x06"}
    parsed = parse_receipt(_deliver("id:7", tlvs=tlvs))
    assert parsed.err == "3:6"
    receipt = receipt_for(parsed, "c")
    assert receipt is not None and receipt.error == "EC_ABSENT_SUBSCRIBER_SM"


def test_ucs2_receipt_text() -> None:
    parsed = parse_receipt(_deliver("id:42 stat:EXPIRED err:000".encode("utf-16-be"), data_coding=8))
    assert parsed == ParsedReceipt("42", "EXPIRED", "000")


@pytest.mark.parametrize(
    ("stat", "outcome"),
    [
        ("DELIVRD", "DELIVERED"),
        ("UNDELIV", "UNDELIVERABLE"),
        ("EXPIRED", "EXPIRED"),
        ("REJECTD", "REJECTED"),
        ("DELETED", "UNDELIVERABLE"),
        ("UNKNOWN", "UNDELIVERABLE"),
        ("ACCEPTD", None),
        ("ENROUTE", None),
        ("WHATEVER", None),
    ],
)
def test_status_mapping(stat: str, outcome: str | None) -> None:
    receipt = receipt_for(ParsedReceipt("1f", stat, "000"), "conn")
    if outcome is None:
        assert receipt is None
    else:
        assert receipt is not None
        assert (receipt.channel, receipt.provider_id, receipt.outcome) == ("SMS", "conn:1f", outcome)
        assert receipt.detail == f"stat:{stat} err:000"
        assert receipt.error is None  # err 000: the outcome's default error


def test_message_state_values() -> None:
    for state, stat in [
        (1, "ENROUTE"),
        (2, "DELIVRD"),
        (3, "EXPIRED"),
        (4, "DELETED"),
        (5, "UNDELIV"),
        (6, "ACCEPTD"),
        (7, "UNKNOWN"),
        (8, "REJECTD"),
    ]:
        assert parse_receipt(_deliver("id:1", tlvs={0x0427: bytes((state,))})).stat == stat


def test_err_to_catalogue() -> None:
    undeliv = receipt_for(ParsedReceipt("1", "UNDELIV", "001"), "c")
    assert undeliv is not None and undeliv.error == "EC_UNKNOWN_SUBSCRIBER"
    absent = receipt_for(ParsedReceipt("1", "UNDELIV", "027"), "c")
    assert absent is not None and absent.error == "EC_ABSENT_SUBSCRIBER"
    odd = receipt_for(ParsedReceipt("1", "UNDELIV", "x7f"), "c")
    assert odd is not None and odd.error is None and odd.detail == "stat:UNDELIV err:x7f"
    delivered = receipt_for(ParsedReceipt("1", "DELIVRD", "001"), "c")
    assert delivered is not None and delivered.error is None


def test_every_name_is_in_the_catalogue_and_outcomes_are_known() -> None:
    for name in [*MAP_ERRORS.values(), *SUBMIT_ERRORS.values(), SUBMIT_ERROR_DEFAULT]:
        assert catalogue.is_error_name(name), name
    assert {o for o in STATS.values() if o is not None} <= set(DEFAULTS)


def test_submit_errors() -> None:
    assert submit_error(0x0B) == "EC_INVALID_DESTINATION_ADDRESS"
    assert submit_error(0x0A) == "EC_INVALID_SOURCE_ADDRESS"
    assert submit_error(0x45) == "EC_NOTSUBMITTEDTOGMSC"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [(" 1000 ", "1000"), ("00ABC\0", "abc"), ("0", "0"), ("000", "0"), ("", ""), ("Ab-Cd", "ab-cd")],
)
def test_normalise_id(raw: str, normal: str) -> None:
    assert normalise_id(raw) == normal
