"""GSM-7 octets, UCS-2, concatenation UDH, addresses and validity of the SMPP connector."""

from __future__ import annotations

import pytest
import smpplib.gsm
from hypothesis import given
from hypothesis import strategies as st

from omnirelay.connectors.smpp.text import (
    GSM7_TABLE,
    destination_address,
    gsm7_decode,
    gsm7_encode,
    message_parts,
    source_address,
    validity_period,
)
from omnirelay.domain import smscount

GSM_CHARS = sorted(smscount.GSM7_BASIC | smscount.GSM7_EXTENSION)


def test_table_covers_exactly_smscounts_alphabets() -> None:
    assert {chr(c) for c in GSM7_TABLE} == set(GSM_CHARS)
    single = {chr(c) for c, v in GSM7_TABLE.items() if len(v) == 1}
    assert single == smscount.GSM7_BASIC
    assert all(ord(v[-1]) < 0x80 for v in GSM7_TABLE.values())
    assert len({v for v in GSM7_TABLE.values()}) == len(GSM7_TABLE)  # no two characters share a code


def test_known_septets() -> None:
    assert gsm7_encode("@£$") == b"\x00\x01\x02"
    assert gsm7_encode("Hello") == b"Hello"
    assert gsm7_encode("Δ_ÆæßÉ") == b"\x10\x11\x1c\x1d\x1e\x1f"
    assert gsm7_encode("¡§¿à") == b"\x40\x5f\x60\x7f"
    assert gsm7_encode("\n\r") == b"\x0a\x0d"


def test_extension_characters_are_escape_plus_code() -> None:
    assert gsm7_encode("€") == b"\x1b\x65"
    assert gsm7_encode("^{}\\[~]|\f") == b"\x1b\x14\x1b\x28\x1b\x29\x1b\x2f\x1b\x3c\x1b\x3d\x1b\x3e\x1b\x40\x1b\x0a"
    assert gsm7_encode("5€ [x]") == b"5\x1b\x65 \x1b\x3cx\x1b\x3e"


def test_agrees_with_smpplibs_table() -> None:
    # smpplib maps 0x5F to '`' instead of '§' and lacks form feed; every other character must agree.
    text = "".join(c for c in GSM_CHARS if c not in "§\f")
    assert gsm7_encode(text) == smpplib.gsm.gsm_encode(text)


@given(st.text(alphabet=GSM_CHARS, max_size=400))
def test_round_trip(text: str) -> None:
    assert gsm7_decode(gsm7_encode(text)) == text


def test_short_gsm_message_is_one_part_without_udh() -> None:
    parts = message_parts("Hello world", 7)
    assert (parts.data_coding, parts.esm_class, parts.payloads) == (0, 0, [b"Hello world"])
    assert message_parts("Hello", 7, gsm7_data_coding=241).data_coding == 241


def test_160_septets_fit_one_part_161_need_two() -> None:
    assert len(message_parts("x" * 160, 1).payloads) == 1
    two = message_parts("x" * 161, 1).payloads
    assert [len(p) for p in two] == [6 + 153, 6 + 8]


def test_three_gsm_parts_carry_udh_reference_total_sequence() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(400))
    parts = message_parts(text, 0x1A3)  # the reference is 8-bit
    assert parts.esm_class == 0x40 and parts.data_coding == 0
    assert len(parts.payloads) == 3 == smscount.count_parts(text)
    for seq, payload in enumerate(parts.payloads, 1):
        assert payload[:6] == bytes((0x05, 0x00, 0x03, 0xA3, 3, seq))
        assert len(payload) - 6 <= 153
    assert "".join(gsm7_decode(p[6:]) for p in parts.payloads) == text


def test_extension_character_never_split_from_its_escape() -> None:
    text = "€" * 81  # 162 septets: two parts of 76 + 5 euro signs
    payloads = message_parts(text, 1).payloads
    assert [len(p) - 6 for p in payloads] == [152, 10]
    for p in payloads:
        assert p[6:] == b"\x1b\x65" * ((len(p) - 6) // 2)


def test_ucs2_and_emoji() -> None:
    parts = message_parts("Привет", 1)
    assert (parts.data_coding, parts.esm_class) == (8, 0)
    assert parts.payloads == ["Привет".encode("utf-16-be")]
    emoji = "😀" * 36  # 72 code units: 33 + 3 emoji, pairs never split
    parts = message_parts(emoji, 9)
    assert parts.data_coding == 8 and parts.esm_class == 0x40
    assert [len(p) - 6 for p in parts.payloads] == [132, 12]
    assert "".join(p[6:].decode("utf-16-be") for p in parts.payloads) == emoji


@given(st.text(max_size=600))
def test_parts_match_smscount(text: str) -> None:
    parts = message_parts(text, 5)
    assert len(parts.payloads) == smscount.count_parts(text)
    body = b"".join(p[6:] for p in parts.payloads) if len(parts.payloads) > 1 else parts.payloads[0]
    if parts.data_coding == 8:
        assert body.decode("utf-16-be") == text
    else:
        assert gsm7_decode(body) == text


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("InfoSMS", (5, 0, b"InfoSMS\0")),
        ("Shop 24", (5, 0, b"Shop 24\0")),
        ("12345", (3, 0, b"12345\0")),
        ("12345678", (3, 0, b"12345678\0")),
        ("41793026727", (1, 1, b"41793026727\0")),
        ("+41793026727", (1, 1, b"41793026727\0")),
        ("+1234", (1, 1, b"1234\0")),
        (None, (0, 0, b"\0")),
        ("", (0, 0, b"\0")),
    ],
)
def test_source_ton_npi(sender: str | None, expected: tuple[int, int, bytes]) -> None:
    assert source_address(sender) == expected


def test_destination_without_plus() -> None:
    assert destination_address("+41 79 302-67-27") == b"41793026727\0"
    assert destination_address("41793026727") == b"41793026727\0"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (30, b"000000000030000R"),
        (30.2, b"000000000031000R"),
        (3600, b"000000010000000R"),
        (48 * 3600, b"000002000000000R"),
        (86400 + 3661, b"000001010101000R"),
        (0, b""),
        (-5, b""),
    ],
)
def test_relative_validity(seconds: float, expected: bytes) -> None:
    assert validity_period(seconds) == expected
