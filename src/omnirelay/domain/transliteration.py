"""Infobip's ``sms.transliteration``: characters a GSM-7 SMS cannot carry replaced by ones it can, so the text
is sent in GSM-7 (160 characters a part) instead of UCS-2 (70).

Each scheme is a table of replacements (a character becomes at most four); characters the GSM 03.38 alphabet
already has (``é``, ``ü``, ``Ç``, the capital Greek letters it shares …) are left as they are. ``NON_UNICODE``
strips the accents of any Latin letter and turns typographic punctuation into ASCII; ``ALL`` applies every
table, then ``NON_UNICODE``. ``NONE`` changes nothing.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Final

from omnirelay.domain import gsm7

__all__ = ["SCHEMES", "transliterate"]

#: The GSM 03.38 default alphabet and extension table: what needs no replacement.
_GSM: Final = (frozenset(gsm7.DEFAULT) - {chr(gsm7.ESC)}) | frozenset(gsm7.DEFAULT_EXTENSION.values())


def _pairs(sources: str, targets: str) -> dict[str, str]:
    """A table from two strings of the same length: character i of ``sources`` becomes character i of ``targets``."""
    assert len(sources) == len(targets)
    return dict(zip(sources, targets, strict=True))


_TURKISH: Final = _pairs("ıİşŞğĞçâÂîÎûÛ", "iIsSgGcaAiIuU")
_GREEK: Final = {
    **_pairs("αβγδεζηθικλμνξοπρσςτυφχψω", "ABΓΔEZHΘIKΛMNΞOΠPΣΣTYΦXΨΩ"),
    **_pairs("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX"),
    **_pairs("άέήίόύώϊϋΐΰΆΈΉΊΌΎΏΪΫ", "AEHIOYΩIYIYAEHIOYΩIY"),
}
_RUSSIAN: Final = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo", "ж": "zh", "з": "z", "и": "i",
    "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "у": "u", "ф": "f", "х": "h", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "",
    "э": "e", "ю": "yu", "я": "ya", "і": "i", "ї": "yi", "є": "ye", "ґ": "g", "ў": "u",
}  # fmt: skip
_SERBIAN: Final = {
    "ђ": "dj", "ж": "z", "ј": "j", "љ": "lj", "њ": "nj", "ћ": "c", "ч": "c", "џ": "dz", "ш": "s", "х": "h",
    "ц": "c", "ѓ": "gj", "ќ": "kj", "ѕ": "dz",
}  # fmt: skip
_BULGARIAN: Final = {"щ": "sht", "ъ": "a", "ь": "y", "й": "y", "ю": "yu", "я": "ya", "ц": "ts", "х": "h"}
_CENTRAL_EUROPEAN: Final = {
    **_pairs("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ", "acelnoszzACELNOSZZ"),  # Polish
    **_pairs("áčďěíňřšťúůýžÁČĎĚÍŇŘŠŤÚŮÝŽ", "acdeinrstuuyzACDEINRSTUUYZ"),  # Czech, Slovak
    **_pairs("ĺľŕôĹĽŔÔ", "llroLLRO"),  # Slovak
    **_pairs("őűŐŰ", "öüÖÜ"),  # Hungarian
    **_pairs("ćđĆĐ", "cdCD"),  # Croatian, Slovenian, Bosnian
    **_pairs("ăâîșşțţĂÂÎȘŞȚŢ", "aaissttAAISSTT"),  # Romanian
}
_BALTIC: Final = {
    **_pairs("āčēģīķļņšūžĀČĒĢĪĶĻŅŠŪŽ", "acegiklnsuzACEGIKLNSUZ"),  # Latvian
    **_pairs("ąčęėįšųūžĄČĘĖĮŠŲŪŽ", "aceeisuuzACEEISUUZ"),  # Lithuanian
    **_pairs("õšžÕŠŽ", "oszOSZ"),  # Estonian
}
_PORTUGUESE: Final = _pairs("áâãçêíóôõúÁÂÃÊÍÓÔÕÚÀ", "aaaceiooouAAAEIOOOUA")
_COLOMBIAN: Final = _pairs("áíóúÁÍÓÚ", "aiouAIOU")
_PUNCTUATION: Final = {
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "–": "-",
    "—": "-", "‐": "-", "‑": "-", "−": "-", "…": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "•": "*",
    "`": "'", "´": "'", "˝": '"', "×": "x", "÷": "/",
}  # fmt: skip


def _upper(table: dict[str, str]) -> dict[str, str]:
    """A table of lower-case Cyrillic letters with their capitals (``Ж`` → ``Zh``)."""
    return {**table, **{k.upper(): v.capitalize() for k, v in table.items() if k.upper() != k}}


_CYRILLIC: Final = _upper(_RUSSIAN)
_SERBIAN_CYRILLIC: Final = {**_CYRILLIC, **_upper(_SERBIAN)}
_BULGARIAN_CYRILLIC: Final = {**_CYRILLIC, **_upper(_BULGARIAN)}


def _non_unicode(char: str) -> str | None:
    """A Latin letter without its accents, or typographic punctuation as ASCII (None: no replacement)."""
    if char in _PUNCTUATION:
        return _PUNCTUATION[char]
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if base and base != char and len(base) <= 4 and all(c in _GSM for c in base):
        return base
    return None


#: Scheme name -> its table (``NON_UNICODE`` and ``ALL`` add :func:`_non_unicode` for what the table lacks).
SCHEMES: Final[dict[str, dict[str, str]]] = {
    "NONE": {},
    "TURKISH": _TURKISH,
    "GREEK": _GREEK,
    "CYRILLIC": _CYRILLIC,
    "SERBIAN_CYRILLIC": _SERBIAN_CYRILLIC,
    "BULGARIAN_CYRILLIC": _BULGARIAN_CYRILLIC,
    "CENTRAL_EUROPEAN": _CENTRAL_EUROPEAN,
    "BALTIC": _BALTIC,
    "PORTUGUESE": _PORTUGUESE,
    "COLOMBIAN": _COLOMBIAN,
    "NON_UNICODE": _PUNCTUATION,
    "ALL": {
        **_TURKISH,
        **_GREEK,
        **_CYRILLIC,
        **_CENTRAL_EUROPEAN,
        **_BALTIC,
        **_PORTUGUESE,
        **_COLOMBIAN,
        **_PUNCTUATION,
    },
}
_FALLBACK: Final = frozenset({"NON_UNICODE", "ALL"})


@functools.lru_cache(maxsize=4096)
def _replacement(scheme: str, char: str) -> str:
    if char in _GSM:
        return char
    found = SCHEMES[scheme].get(char)
    if found is not None:
        return found
    if scheme in _FALLBACK:
        fallback = _non_unicode(char)
        if fallback is not None:
            return fallback
    return char


def transliterate(text: str, scheme: str) -> str:
    """``text`` with the replacements of ``scheme`` (a name of :data:`SCHEMES`)."""
    if scheme == "NONE" or all(char in _GSM for char in text):
        return text
    return "".join(_replacement(scheme, char) for char in text)
