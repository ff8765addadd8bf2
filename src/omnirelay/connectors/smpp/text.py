"""What goes into a submit_sm besides the protocol: text octets, concatenation, addresses, validity.

The parts are exactly those :func:`omnirelay.domain.smscount.split_parts` counts (so ``messageCount`` in
reports equals the PDUs sent). GSM-7 text travels unpacked, one septet per octet, extension characters as
ESC plus their code, in the national language tables the ``sms`` object's language chose (named in the UDH);
anything else as UCS-2 (UTF-16BE, surrogate pairs for characters outside the BMP).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final

from omnirelay.domain import gsm7, smscount

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

ESC: Final = gsm7.ESC
DATA_CODING_UCS2: Final = 8
ESM_CLASS_UDHI: Final = 0x40
#: UDH information elements: concatenation with an 8-bit reference, national language single / locking shift.
IE_CONCAT: Final = 0x00
IE_SINGLE_SHIFT: Final = 0x24
IE_LOCKING_SHIFT: Final = 0x25


@functools.cache
def _encode_table(locking: int, single: int) -> dict[int, str]:
    """``str.translate`` table: a character of the tables -> its septet(s) as code points < 128."""
    table = {ord(char): chr(ESC) + chr(code) for code, char in gsm7.extension(single).items()}
    table.update((ord(char), chr(code)) for code, char in enumerate(gsm7.alphabet(locking)) if code != ESC)
    return table


#: ``str.translate`` table of the default alphabet and extension table.
GSM7_TABLE: Final[dict[int, str]] = _encode_table(0, 0)


def gsm7_encode(text: str, locking: int = 0, single: int = 0) -> bytes:
    """Unpacked GSM 03.38 septets of ``text`` in the alphabet of ``locking`` and the shift table of ``single``
    (national language identifiers, 0 for the default tables); shift-table characters become ESC and their
    code. Every character must be in the tables (see :func:`omnirelay.domain.smscount.choose_coding`)."""
    return text.translate(_encode_table(locking, single)).encode("ascii")


def gsm7_decode(octets: bytes, locking: int = 0, single: int = 0) -> str:
    """Text of unpacked GSM 03.38 septets (receipts, tests); unknown codes become ``?``."""
    letters = gsm7.alphabet(locking)
    shifted = gsm7.extension(single)
    out: list[str] = []
    escaped = False
    for octet in octets:
        if escaped:
            out.append(shifted.get(octet, " "))
            escaped = False
        elif octet == ESC:
            escaped = True
        else:
            out.append(letters[octet] if octet < 0x80 else "?")
    return "".join(out)


@dataclass(frozen=True)
class Parts:
    """The short_message octets of each part, and the data_coding and esm_class they all share."""

    data_coding: int
    esm_class: int
    payloads: list[bytes]


def message_parts(text: str, reference: int, gsm7_data_coding: int = 0, coding: smscount.Coding | None = None) -> Parts:
    """Encode ``text`` in ``coding`` (by default GSM-7 when the default alphabet can carry it, else UCS-2) and cut
    it into the parts :func:`~omnirelay.domain.smscount.split_parts` counts.

    More than one part: each starts with a concatenation UDH element with an 8-bit reference (``00 03 ref
    total seq``) and esm_class has UDHI (0x40). National language tables add their elements to every part's
    UDH, also to a single part's: ``24 01 id`` (single shift), ``25 01 id`` (locking shift).
    """
    if coding is None:
        coding = smscount.Coding(smscount.encoding(text))
    gsm7_text = coding.encoding == "GSM7"
    shifts = b""
    if coding.single:
        shifts += bytes((IE_SINGLE_SHIFT, 1, coding.single))
    if coding.locking:
        shifts += bytes((IE_LOCKING_SHIFT, 1, coding.locking))
    # Short texts fit one part whatever they hold (80 characters cost at most 160 septets, 35 at most 70
    # UTF-16 code units): most messages skip the splitter.
    short = not shifts and len(text) <= (80 if gsm7_text else 35)
    chunks = [text] if short else smscount.split_parts(text, coding)
    if gsm7_text:
        data_coding = gsm7_data_coding
        encoded = [gsm7_encode(chunk, coding.locking, coding.single) for chunk in chunks]
    else:
        data_coding = DATA_CODING_UCS2
        encoded = [chunk.encode("utf-16-be", "surrogatepass") for chunk in chunks]
    if len(encoded) == 1:
        if not shifts:
            return Parts(data_coding, 0, encoded)
        return Parts(data_coding, ESM_CLASS_UDHI, [bytes((len(shifts),)) + shifts + encoded[0]])
    total = len(encoded)
    if total > 0xFF:  # validation keeps texts to 25 parts; this guards what was stored before it did
        raise ValueError(f"the text needs {total} parts, more than the 255 a concatenation header can number")
    ref = reference & 0xFF
    return Parts(
        data_coding,
        ESM_CLASS_UDHI,
        [
            bytes((5 + len(shifts), IE_CONCAT, 3, ref, total, seq)) + shifts + octets
            for seq, octets in enumerate(encoded, 1)
        ],
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
