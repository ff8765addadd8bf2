"""What goes into a submit_sm besides the protocol: text octets, concatenation, addresses, validity.

The parts are exactly those :func:`omnirelay.domain.smscount.split_parts` counts (so ``messageCount`` in
reports equals the PDUs sent). GSM-7 text travels unpacked, one septet per octet, extension characters as
ESC plus their code; anything else as UCS-2 (UTF-16BE, surrogate pairs for characters outside the BMP).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final

from omnirelay.domain import smscount

__all__ = [
    "GSM7_TABLE",
    "Parts",
    "destination_address",
    "gsm7_decode",
    "gsm7_encode",
    "message_parts",
    "source_address",
    "validity_period",
]

#: The GSM 03.38 default alphabet in septet order; position 0x1B is ESC (the escape to the extension table).
_BASIC_ORDER: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The GSM 03.38 extension table: character -> the septet that follows ESC.
_EXTENSION: Final[dict[str, int]] = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
ESC: Final = 0x1B

#: ``str.translate`` table: a character of the GSM 03.38 alphabets -> its septet(s) as code points < 128.
GSM7_TABLE: Final[dict[int, str]] = {
    **{ord(char): chr(septet) for septet, char in enumerate(_BASIC_ORDER) if septet != ESC},
    **{ord(char): chr(ESC) + chr(septet) for char, septet in _EXTENSION.items()},
}
_GSM7_DECODE: Final[dict[int, str]] = {septet: char for septet, char in enumerate(_BASIC_ORDER) if septet != ESC}
_GSM7_EXT_DECODE: Final[dict[int, str]] = {septet: char for char, septet in _EXTENSION.items()}

DATA_CODING_UCS2: Final = 8
ESM_CLASS_UDHI: Final = 0x40


def gsm7_encode(text: str) -> bytes:
    """Unpacked GSM 03.38 septets of ``text`` (every character must be in the alphabets, see
    :func:`omnirelay.domain.smscount.encoding`); extension characters become ESC and their code."""
    return text.translate(GSM7_TABLE).encode("ascii")


def gsm7_decode(octets: bytes) -> str:
    """Text of unpacked GSM 03.38 septets (receipts, tests); unknown codes become ``?``."""
    out: list[str] = []
    escaped = False
    for octet in octets:
        if escaped:
            out.append(_GSM7_EXT_DECODE.get(octet, " "))
            escaped = False
        elif octet == ESC:
            escaped = True
        else:
            out.append(_GSM7_DECODE.get(octet, "?"))
    return "".join(out)


@dataclass(frozen=True)
class Parts:
    """The short_message octets of each part, and the data_coding and esm_class they all share."""

    data_coding: int
    esm_class: int
    payloads: list[bytes]


def message_parts(text: str, reference: int, gsm7_data_coding: int = 0) -> Parts:
    """Encode ``text`` and cut it into the parts :func:`~omnirelay.domain.smscount.split_parts` counts.

    More than one part: each starts with a concatenation UDH with an 8-bit reference (``05 00 03 ref total
    seq``) and esm_class has UDHI (0x40).
    """
    gsm7 = smscount.encoding(text) == "GSM7"
    # Short texts fit one part whatever they hold (80 characters cost at most 160 septets, 35 at most 70
    # UTF-16 code units): most messages skip the splitter.
    chunks = [text] if len(text) <= (80 if gsm7 else 35) else smscount.split_parts(text)
    if gsm7:
        coding = gsm7_data_coding
        encoded = [gsm7_encode(chunk) for chunk in chunks]
    else:
        coding = DATA_CODING_UCS2
        encoded = [chunk.encode("utf-16-be", "surrogatepass") for chunk in chunks]
    if len(encoded) == 1:
        return Parts(coding, 0, encoded)
    total = len(encoded)
    ref = reference & 0xFF
    return Parts(
        coding,
        ESM_CLASS_UDHI,
        [bytes((0x05, 0x00, 0x03, ref, total, seq)) + octets for seq, octets in enumerate(encoded, 1)],
    )


@functools.lru_cache(maxsize=1024)
def source_address(sender: str | None) -> tuple[int, int, bytes]:
    """(TON, NPI, address octets with NUL) for the step's ``from``.

    Alphanumeric: TON 5 (alphanumeric) / NPI 0. Digits with ``+``, or more than 8 digits: TON 1
    (international) / NPI 1 (E.164), without ``+``. Up to 8 digits: a short code, TON 3 (network specific) /
    NPI 0. No sender: 0/0 and an empty address (the SMSC's default).
    """
    if not sender:
        return 0, 0, b"\0"
    value = sender.strip()
    digits = value[1:] if value.startswith("+") else value
    if digits.isdigit() and digits.isascii():
        if value.startswith("+") or len(digits) > 8:
            return 1, 1, digits.encode("ascii") + b"\0"
        return 3, 0, digits.encode("ascii") + b"\0"
    return 5, 0, value.encode("latin-1", "replace") + b"\0"


def destination_address(address: str) -> bytes:
    """The destination digits (international, TON 1 / NPI 1) with NUL: without ``+``, spaces or dashes."""
    digits = address[1:] if address.startswith("+") else address
    if not (digits.isdigit() and digits.isascii()):
        digits = "".join(c for c in digits if c.isdigit() and c.isascii())
    return digits.encode("ascii") + b"\0"


@functools.lru_cache(maxsize=1024)
def validity_period(seconds: float) -> bytes:
    """The relative time string ``YYMMDDhhmmss000R`` (§7.1.1.2) for ``seconds`` (rounded up to whole
    seconds); empty (the SMSC's default) when not positive."""
    if seconds <= 0 or not math.isfinite(seconds):
        return b""
    total = min(math.ceil(seconds), 99 * 86400 + 86399)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R".encode("ascii")
