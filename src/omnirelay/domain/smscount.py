"""SMS encoding choice, part counting and splitting (3GPP TS 23.038 / 23.040).

* **GSM-7** (every character is in the GSM 03.38 default alphabet or its extension table): 160 septets fit
  one SMS, 153 per part once the text is concatenated (the 6-octet UDH with an 8-bit reference takes 7
  septets). An extension-table character (``^ { } \\ [ ~ ] | €`` and form feed) is sent as ESC plus the
  character, so it costs two septets, and a part never ends between the ESC and its character.
* **UCS-2** (anything else): 70 UTF-16 code units in one SMS, 67 per part. A character outside the BMP
  (e.g. an emoji) is a surrogate pair of two code units and is never split across parts.

Parts are filled greedily: each part takes as many whole characters as fit. The empty text is one
(empty) part. ``split_parts`` returns the parts so an SMPP connector can send exactly what was counted.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_MULTI_PART",
    "GSM7_SINGLE_PART",
    "UCS2_MULTI_PART",
    "UCS2_SINGLE_PART",
    "Encoding",
    "count_parts",
    "encoding",
    "split_parts",
]

Encoding = Literal["GSM7", "UCS2"]

#: Septets in a single GSM-7 SMS, and per part of a concatenated one.
GSM7_SINGLE_PART: Final = 160
GSM7_MULTI_PART: Final = 153
#: UTF-16 code units in a single UCS-2 SMS, and per part of a concatenated one.
UCS2_SINGLE_PART: Final = 70
UCS2_MULTI_PART: Final = 67

#: The GSM 03.38 default alphabet (one septet each), as mapped by unicode.org's GSM0338.TXT. Position 0x1B
#: (ESC) is deliberately absent: it is the escape to the extension table, not a character a text can carry.
GSM7_BASIC: Final[frozenset[str]] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"  # 0x1B (ESC) sits between Ξ and Æ
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

#: The GSM 03.38 extension table (ESC + character: two septets each).
GSM7_EXTENSION: Final[frozenset[str]] = frozenset("\f^{}\\[~]|€")

_HIGH_SURROGATES: Final = range(0xD800, 0xDC00)
_LOW_SURROGATES: Final = range(0xDC00, 0xE000)


def encoding(text: str) -> Encoding:
    """``"GSM7"`` when every character of ``text`` is in the GSM 03.38 default alphabet or its extension
    table (so the empty text is GSM7), else ``"UCS2"``."""
    for char in text:
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            return "UCS2"
    return "GSM7"


def _units(text: str, enc: Encoding) -> list[tuple[int, int]]:
    """The indivisible units of ``text`` as (length in ``str`` characters, cost in septets or code units).

    GSM-7: one character each, costing 2 for extension characters. UCS-2: one character each, costing 2
    outside the BMP; a high surrogate code point directly followed by a low one (a surrogate pair left in a
    ``str``, e.g. from ``surrogatepass`` decoding) is kept together as one unit of cost 2. A lone surrogate
    costs one code unit.
    """
    units: list[tuple[int, int]] = []
    if enc == "GSM7":
        for char in text:
            units.append((1, 2 if char in GSM7_EXTENSION else 1))
        return units
    i = 0
    n = len(text)
    while i < n:
        code = ord(text[i])
        if code > 0xFFFF:
            units.append((1, 2))
            i += 1
        elif code in _HIGH_SURROGATES and i + 1 < n and ord(text[i + 1]) in _LOW_SURROGATES:
            units.append((2, 2))
            i += 2
        else:
            units.append((1, 1))
            i += 1
    return units


def _limits(enc: Encoding) -> tuple[int, int]:
    if enc == "GSM7":
        return GSM7_SINGLE_PART, GSM7_MULTI_PART
    return UCS2_SINGLE_PART, UCS2_MULTI_PART


def _boundaries(text: str) -> list[int]:
    """End indices (into ``text``) of each part; the last one is ``len(text)``."""
    enc = encoding(text)
    single, multi = _limits(enc)
    units = _units(text, enc)
    if sum(cost for _, cost in units) <= single:
        return [len(text)]
    ends: list[int] = []
    pos = 0
    used = 0
    for length, cost in units:
        if used + cost > multi:
            ends.append(pos)
            used = 0
        used += cost
        pos += length
    ends.append(pos)
    return ends


def count_parts(text: str) -> int:
    """How many SMS parts ``text`` needs (GSM-7 160/153 septets, UCS-2 70/67 code units); at least 1."""
    return len(_boundaries(text))


def split_parts(text: str) -> list[str]:
    """``text`` cut into the parts that :func:`count_parts` counts.

    ``"".join(split_parts(t)) == t`` and ``len(split_parts(t)) == count_parts(t)``; no part ends between an
    extension character's escape and the character, nor inside a surrogate pair. The empty text gives
    ``[""]``.
    """
    parts: list[str] = []
    start = 0
    for end in _boundaries(text):
        parts.append(text[start:end])
        start = end
    return parts
