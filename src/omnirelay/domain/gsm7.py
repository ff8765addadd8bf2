"""The GSM 7-bit alphabets of 3GPP TS 23.038 as data: the default alphabet and its extension table (§6.2.1),
and the national language locking shift and single shift tables (Annex A) of the languages Infobip's
``sms.language.languageCode`` names (Turkish, Spanish, Portuguese).

A *locking shift* table replaces the default alphabet for the whole message; a *single shift* table replaces
the extension table (what follows ESC, 0x1B). Each costs the message a 3-octet UDH information element naming
its language (0x25 locking, 0x24 single shift; §9.2.3.24.15-16 of TS 23.040). Spanish has no locking shift
table (Annex A.3.2 is void), only a single shift one.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT",
    "DEFAULT_EXTENSION",
    "ESC",
    "LANGUAGES",
    "LOCKING_SHIFT",
    "SINGLE_SHIFT",
    "alphabet",
    "extension",
]

#: The escape to the shift table (a code, not a character).
ESC: Final = 0x1B

#: The default alphabet in code order (0x00-0x7F); position 0x1B is ESC.
DEFAULT: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: The default extension table: code after ESC -> character.
DEFAULT_EXTENSION: Final[dict[int, str]] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

#: National Language Identifiers (TS 23.038 §6.2.1.2.4) of the languages Infobip names.
LANGUAGES: Final[dict[str, int]] = {"TR": 1, "ES": 2, "PT": 3}

#: Locking shift tables (Annex A.3) by language identifier, in code order; position 0x1B is ESC.
LOCKING_SHIFT: Final[dict[int, str]] = {
    # A.3.1 Turkish
    1: (
        "@£$¥€éùıòÇ\nĞğ\rÅå"
        "Δ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ"
        " !\"#¤%&'()*+,-./"
        "0123456789:;<=>?"
        "İABCDEFGHIJKLMNO"
        "PQRSTUVWXYZÄÖÑÜ§"
        "çabcdefghijklmno"
        "pqrstuvwxyzäöñüà"
    ),
    # A.3.3 Portuguese
    3: (
        "@£$¥êéúíóç\nÔô\rÁá"
        "Δ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ"
        " !\"#º%&'()*+,-./"
        "0123456789:;<=>?"
        "ÍABCDEFGHIJKLMNO"
        "PQRSTUVWXYZÃÕÚÜ§"
        "~abcdefghijklmno"
        "pqrstuvwxyzãõ`üà"
    ),
}

#: Single shift tables (Annex A.2) by language identifier: code after ESC -> character.
SINGLE_SHIFT: Final[dict[int, dict[int, str]]] = {
    # A.2.1 Turkish
    1: {
        **DEFAULT_EXTENSION,
        0x47: "Ğ",
        0x49: "İ",
        0x53: "Ş",
        0x63: "ç",
        0x67: "ğ",
        0x69: "ı",
        0x73: "ş",
    },
    # A.2.2 Spanish
    2: {
        **DEFAULT_EXTENSION,
        0x09: "ç",
        0x41: "Á",
        0x49: "Í",
        0x4F: "Ó",
        0x55: "Ú",
        0x61: "á",
        0x69: "í",
        0x6F: "ó",
        0x75: "ú",
    },
    # A.2.3 Portuguese
    3: {
        **DEFAULT_EXTENSION,
        0x05: "ê",
        0x09: "ç",
        0x0B: "Ô",
        0x0C: "ô",
        0x0E: "Á",
        0x0F: "á",
        0x12: "Φ",
        0x13: "Γ",
        0x15: "Ω",
        0x16: "Π",
        0x17: "Ψ",
        0x18: "Σ",
        0x19: "Θ",
        0x1F: "Ê",
        0x41: "À",
        0x49: "Í",
        0x4F: "Ó",
        0x55: "Ú",
        0x5B: "Ã",
        0x5C: "Õ",
        0x61: "Â",
        0x69: "í",
        0x6F: "ó",
        0x75: "ú",
        0x7B: "ã",
        0x7C: "õ",
        0x7F: "â",
    },
}


def alphabet(locking: int) -> str:
    """The 128 characters in code order for a locking shift language (0: the default alphabet)."""
    return DEFAULT if locking == 0 else LOCKING_SHIFT[locking]


def extension(single: int) -> dict[int, str]:
    """The shift table for a single shift language (0: the default extension table)."""
    return DEFAULT_EXTENSION if single == 0 else SINGLE_SHIFT[single]
