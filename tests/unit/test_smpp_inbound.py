"""Mobile-originated deliver_sm decoded: text by data_coding, concatenation by UDH and SAR TLVs."""

from __future__ import annotations

import pytest

from omnirelay.connectors.smpp.inbound import decode_mo, decode_text
from omnirelay.connectors.smpp.pdu import DeliverSm
from omnirelay.domain.inbound import split_keyword


def deliver(octets: bytes, data_coding: int = 0, esm_class: int = 0, **tlvs: bytes) -> DeliverSm:
    tags = {"sar_ref": 0x020C, "sar_total": 0x020E, "sar_seq": 0x020F, "umr": 0x0204, "payload": 0x0424}
    return DeliverSm("4917612345678", "4915790000001", esm_class, data_coding, octets,
                     {tags[k]: v for k, v in tlvs.items()})


def test_gsm7_text_with_extension_characters() -> None:
    part = decode_mo(deliver(b"Price \x1be5 \x00 10\x02"), "smsc")
    assert (part.text, part.reference, part.total, part.seq) == ("Price €5 @ 10$", "", 1, 1)
    assert (part.source, part.destination, part.connector) == ("4917612345678", "4915790000001", "smsc")


def test_ucs2_joins_surrogate_pairs_and_latin1_keeps_every_octet() -> None:
    assert decode_mo(deliver("Привет 👋".encode("utf-16-be"), 8), "smsc").text == "Привет 👋"
    assert decode_mo(deliver("Grüße".encode("latin-1"), 3), "smsc").text == "Grüße"
    assert decode_text("Ωmega".encode("utf-16-be"), 0x18) == "Ωmega"  # general group, UCS-2
    assert decode_text(b"Hi \x00", 0xF1) == "Hi @"  # GSM class 1
    assert decode_text(b"\x00\xff", 4) == "\x00\xff"  # octet data as Latin-1


def test_connector_gsm7_data_coding_reads_as_gsm7() -> None:
    assert decode_mo(deliver(b"a\x00b", 241), "smsc", gsm7_data_coding=241).text == "a@b"


def test_udh_8_and_16_bit_references() -> None:
    eight = decode_mo(deliver(bytes((5, 0, 3, 42, 3, 2)) + b"middle", esm_class=0x40), "smsc")
    assert (eight.reference, eight.total, eight.seq, eight.text) == ("8:42", 3, 2, "middle")
    sixteen = decode_mo(deliver(bytes((6, 8, 4, 1, 44, 2, 1)) + "ä".encode("utf-16-be"), 8, 0x40), "smsc")
    assert (sixteen.reference, sixteen.total, sixteen.seq, sixteen.text) == ("16:300", 2, 1, "ä")
    assert eight.group != decode_mo(deliver(bytes((5, 0, 3, 43, 3, 2)) + b"middle", esm_class=0x40), "smsc").group


def test_national_language_shift_named_in_the_udh() -> None:
    # Turkish single shift (table 1): ESC 0x47 is "Ğ", ESC 0x67 "ğ"
    part = decode_mo(deliver(bytes((3, 0x24, 1, 1)) + b"\x1b\x47\x1b\x67", esm_class=0x40), "smsc")
    assert part.text == "Ğğ" and part.total == 1


def test_sar_tlvs_and_message_payload() -> None:
    part = decode_mo(deliver(b"", sar_ref=b"\x01\x00", sar_total=b"\x02", sar_seq=b"\x02", payload=b"tail"), "smsc")
    assert (part.reference, part.total, part.seq, part.text) == ("sar:256", 2, 2, "tail")


def test_single_part_takes_the_user_message_reference() -> None:
    assert decode_mo(deliver(b"yes", umr=b"\x00\x07"), "smsc").reference == "umr:7"
    assert decode_mo(deliver(b"yes", umr=b"\x00\x07"), "smsc").key != decode_mo(deliver(b"yes"), "smsc").key


def test_broken_user_data_header_is_refused() -> None:
    with pytest.raises(ValueError):
        decode_mo(deliver(bytes((9, 0, 3)) + b"x", esm_class=0x40), "smsc")
    with pytest.raises(ValueError):
        decode_mo(deliver(bytes((5, 0, 3, 1, 2, 3)) + b"x", esm_class=0x40), "smsc")  # part 3 of 2


def test_keyword_is_split_off_only_when_configured() -> None:
    assert split_keyword("quiz Paris", ["QUIZ"]) == ("QUIZ", "Paris")
    assert split_keyword("Paris", ["QUIZ"]) == (None, "Paris")
    assert split_keyword("quiz", ["quiz"]) == ("QUIZ", "")
