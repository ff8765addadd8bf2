"""SMS encoding choice, part counting and splitting (3GPP TS 23.038 / 23.040).

* **GSM-7** (every character is in the GSM 03.38 default alphabet or its extension table): 160 septets fit
  one SMS, 153 per part once the text is concatenated (the 6-octet UDH with an 8-bit reference takes 7
  septets). An extension-table character (``^ { } \\ [ ~ ] | €`` and form feed) is sent as ESC plus the
  character, so it costs two septets, and a part never ends between the ESC and its character.
* **GSM-7 with national language tables** (``sms.language.languageCode``, see :mod:`omnirelay.domain.gsm7`):
  a locking shift table replaces the default alphabet, a single shift table the extension table; each adds a
  3-octet UDH element to every part, so a part holds 155 / 149 septets with one table and 152 / 146 with both
  (single / concatenated). The cheapest choice in parts is taken, the default alphabet first.
* **UCS-2** (anything else): 70 UTF-16 code units in one SMS, 67 per part. A character outside the BMP
  (e.g. an emoji) is a surrogate pair of two code units and is never split across parts.

``sms.transliteration`` (:mod:`omnirelay.domain.transliteration`) replaces characters before the choice.
Parts are filled greedily: each part takes as many whole characters as fit. The empty text is one
(empty) part. ``split_parts`` returns the parts so an SMPP connector can send exactly what was counted.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, Final, Literal, NamedTuple

from omnirelay.domain import gsm7
from omnirelay.domain.transliteration import transliterate

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_MULTI_PART",
    "GSM7_SINGLE_PART",
    "MAX_PARTS",
    "UCS2_MULTI_PART",
    "UCS2_SINGLE_PART",
    "Coding",
    "Encoding",
    "choose_coding",
    "count_parts",
    "encoding",
    "sms_parts",
    "sms_text",
    "split_parts",
]

Encoding = Literal["GSM7", "UCS2"]

#: Septets in a single GSM-7 SMS, and per part of a concatenated one.
GSM7_SINGLE_PART: Final = 160
GSM7_MULTI_PART: Final = 153
#: UTF-16 code units in a single UCS-2 SMS, and per part of a concatenated one.
UCS2_SINGLE_PART: Final = 70
UCS2_MULTI_PART: Final = 67
#: The most parts one SMS may have (Infobip's ``REJECTED_MESSAGE_TOO_LONG``: "more than 25 parts").
MAX_PARTS: Final = 25
#: A text of at most this many characters fits in MAX_PARTS whatever it holds and however it is encoded: a
#: character costs at most 2 septets or code units and, transliterated, becomes at most 4 characters.
SURELY_FITS: Final = 837


class Coding(NamedTuple):
    """How a text is encoded: GSM7 with the national language tables it uses (0: the default ones), or UCS2."""

    encoding: Encoding
    locking: int = 0
    """National language identifier of the locking shift table (0: the default alphabet)."""
    single: int = 0
    """National language identifier of the single shift table (0: the default extension table)."""

    @property
    def shift_elements(self) -> int:
        """How many national language UDH elements (3 octets each) every part carries."""
        return (self.locking != 0) + (self.single != 0)


GSM7_DEFAULT: Final = Coding("GSM7")
UCS2: Final = Coding("UCS2")

#: The GSM 03.38 default alphabet (one septet each). ESC (0x1B) is absent: it is the escape to the
#: extension table, not a character a text can carry.
GSM7_BASIC: Final[frozenset[str]] = frozenset(gsm7.DEFAULT) - {chr(gsm7.ESC)}

#: The GSM 03.38 extension table (ESC + character: two septets each).
GSM7_EXTENSION: Final[frozenset[str]] = frozenset(gsm7.DEFAULT_EXTENSION.values())

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


def _limits(coding: Coding) -> tuple[int, int]:
    """Septets (GSM-7) or code units (UCS-2) in a single SMS and per part of a concatenated one."""
    if coding.encoding == "UCS2":
        return UCS2_SINGLE_PART, UCS2_MULTI_PART
    elements = coding.shift_elements
    if elements == 0:
        return GSM7_SINGLE_PART, GSM7_MULTI_PART
    # the UDH (its length octet, 3 octets an element, 5 more for concatenation) padded to whole septets
    single_udh = 1 + 3 * elements
    return 160 - math.ceil(single_udh * 8 / 7), 160 - math.ceil((single_udh + 5) * 8 / 7)


@functools.cache
def _costs(locking: int, single: int) -> dict[str, int]:
    """Septets of each character GSM-7 with these tables can carry: 1 in the alphabet, 2 in the shift table."""
    costs = {char: 2 for char in gsm7.extension(single).values()}
    costs.update((char, 1) for code, char in enumerate(gsm7.alphabet(locking)) if code != gsm7.ESC)
    return costs


def _national_units(text: str, coding: Coding) -> list[tuple[int, int]] | None:
    """:func:`_units` for GSM-7 with national tables, or None when a character is in neither table."""
    costs = _costs(coding.locking, coding.single)
    units: list[tuple[int, int]] = []
    for char in text:
        cost = costs.get(char)
        if cost is None:
            return None
        units.append((1, cost))
    return units


def _cut(units: list[tuple[int, int]], coding: Coding, length: int) -> list[int]:
    single, multi = _limits(coding)
    if sum(cost for _, cost in units) <= single:
        return [length]
    ends: list[int] = []
    pos = 0
    used = 0
    for size, cost in units:
        if used + cost > multi:
            ends.append(pos)
            used = 0
        used += cost
        pos += size
    ends.append(pos)
    return ends


def _boundaries(text: str, coding: Coding | None = None) -> list[int]:
    """End indices (into ``text``) of each part; the last one is ``len(text)``."""
    if coding is None or coding.shift_elements == 0:
        enc = encoding(text) if coding is None else coding.encoding
        return _cut(_units(text, enc), coding or Coding(enc), len(text))
    units = _national_units(text, coding)
    if units is None:
        raise ValueError(f"the text cannot be encoded with {coding}")
    return _cut(units, coding, len(text))


def choose_coding(
    text: str, language: str | None = None, single_shift: bool | None = None, locking_shift: bool | None = None
) -> Coding:
    """The coding of ``text`` for Infobip's ``sms.language``: the default GSM-7 alphabet when it can carry the
    text; else, with a ``languageCode`` (``TR``, ``ES``, ``PT``, or ``AUTODETECT`` for any), the national
    tables that need the fewest parts (fewer tables on a tie); else UCS-2. ``singleShift`` / ``lockingShift``
    false (the legacy fields) rule out that kind of table."""
    default = encoding(text)
    if language is None or language == "NONE":
        return Coding(default)
    ids = list(gsm7.LANGUAGES.values()) if language == "AUTODETECT" else [gsm7.LANGUAGES[language]]
    candidates = [GSM7_DEFAULT] if default == "GSM7" else []
    for n in ids:
        if single_shift is not False:
            candidates.append(Coding("GSM7", 0, n))
        if locking_shift is not False and n in gsm7.LOCKING_SHIFT:
            candidates.append(Coding("GSM7", n, 0))
            if single_shift is not False:
                candidates.append(Coding("GSM7", n, n))
    best: tuple[int, int, Coding] | None = None
    for coding in candidates:
        units = _units(text, "GSM7") if coding == GSM7_DEFAULT else _national_units(text, coding)
        if units is None:
            continue
        parts = len(_cut(units, coding, len(text)))
        if best is None or (parts, coding.shift_elements) < best[:2]:
            best = (parts, coding.shift_elements, coding)
    return best[2] if best is not None else UCS2


def count_parts(text: str, coding: Coding | None = None) -> int:
    """How many SMS parts ``text`` needs in ``coding`` (by default GSM-7 160/153 septets when the default
    alphabet can carry it, else UCS-2 70/67 code units); at least 1."""
    return len(_boundaries(text, coding))


def split_parts(text: str, coding: Coding | None = None) -> list[str]:
    """``text`` cut into the parts that :func:`count_parts` counts.

    ``"".join(split_parts(t)) == t`` and ``len(split_parts(t)) == count_parts(t)``; no part ends between an
    extension character's escape and the character, nor inside a surrogate pair. The empty text gives
    ``[""]``.
    """
    parts: list[str] = []
    start = 0
    for end in _boundaries(text, coding):
        parts.append(text[start:end])
        start = end
    return parts


def sms_text(sms: Mapping[str, Any]) -> tuple[str, Coding]:
    """The text an ``sms`` content object (as builtins) sends, transliterated, and its coding."""
    text = sms.get("text") or ""
    scheme = sms.get("transliteration")
    if scheme:
        text = transliterate(text, scheme)
    language = sms.get("language") or {}
    code = language.get("languageCode")
    if not code or code == "NONE":
        return text, Coding(encoding(text))
    return text, choose_coding(text, code, language.get("singleShift"), language.get("lockingShift"))


_CACHE_MAX = 10_000
#: Parts by the ``sms`` object's text and options: the messages of one request share them.
_parts: dict[tuple[Any, ...], int] = {}


def sms_parts(sms: Mapping[str, Any]) -> int:
    """How many parts an ``sms`` content object's text is sent in (see :func:`sms_text`)."""
    language = sms.get("language") or {}
    key = (
        sms.get("text") or "",
        sms.get("transliteration"),
        language.get("languageCode"),
        language.get("singleShift"),
        language.get("lockingShift"),
    )
    count = _parts.get(key)
    if count is None:
        text, coding = sms_text(sms)
        count = count_parts(text, coding)
        if len(_parts) >= _CACHE_MAX:
            _parts.clear()
        _parts[key] = count
    return count
