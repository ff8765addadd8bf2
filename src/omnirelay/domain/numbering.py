"""Phone number → region, region → mobile country code (ITU-T E.212), and operator-configured MCC/MNC.

Phone numbers here are international numbers as digits without ``+`` (``"41793026727"``), the form SMPP
destinations and OMNI ``phoneNumber`` use. A leading ``+`` is tolerated. Nothing is looked up over the
network: the current serving network of a ported number needs an HLR/MNP query, which is out of scope, so
:class:`MccMncTable` maps number prefixes (number ranges) to the operator the gateway's operator
configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import phonenumbers

__all__ = ["MCC_BY_REGION", "MccMncTable", "mcc_of_region", "region_of"]

#: ITU-T E.212 mobile country code per ISO 3166-1 alpha-2 region (plus ``XK`` for Kosovo, as phonenumbers
#: uses). Countries with several MCCs list their first one (US 310–316, GB 234/235, IN 404–406, JP 440/441,
#: CN 460/461, AE 424/430/431); a network under another of them can be configured with its full MCC+MNC in
#: :class:`MccMncTable`. Territories without their own MCC carry the one their networks are listed under
#: (GG/JE/IM 234, AX 244, SJ 242, CC/CX/NF 505, BL/MF/MQ 340, YT 647, BQ/SX 362, AC/TA 658, PS 425).
#: GF, GU and MP carry their own E.212 codes (742, 535, 534) although their networks largely use 340 and
#: 310/311. Regions without mobile networks or an MCC (EH, AQ, GS, PN, ...) are absent.
MCC_BY_REGION: Final[Mapping[str, str]] = {
    # Zone 2: Europe
    "GR": "202", "NL": "204", "BE": "206", "FR": "208", "MC": "212", "AD": "213", "ES": "214",
    "HU": "216", "BA": "218", "HR": "219", "RS": "220", "XK": "221", "IT": "222", "VA": "225",
    "RO": "226", "CH": "228", "CZ": "230", "SK": "231", "AT": "232", "GB": "234", "GG": "234",
    "JE": "234", "IM": "234", "DK": "238", "SE": "240", "NO": "242", "SJ": "242", "FI": "244",
    "AX": "244", "LT": "246", "LV": "247", "EE": "248", "RU": "250", "UA": "255", "BY": "257",
    "MD": "259", "PL": "260", "DE": "262", "GI": "266", "PT": "268", "LU": "270", "IE": "272",
    "IS": "274", "AL": "276", "MT": "278", "CY": "280", "GE": "282", "AM": "283", "BG": "284",
    "TR": "286", "FO": "288", "GL": "290", "SM": "292", "SI": "293", "MK": "294", "LI": "295",
    "ME": "297",
    # Zone 3: North America and the Caribbean
    "CA": "302", "PM": "308", "US": "310", "PR": "330", "VI": "332", "MX": "334", "JM": "338",
    "GP": "340", "MQ": "340", "BL": "340", "MF": "340", "BB": "342", "AG": "344", "KY": "346",
    "VG": "348", "BM": "350", "GD": "352", "MS": "354", "KN": "356", "LC": "358", "VC": "360",
    "CW": "362", "SX": "362", "BQ": "362", "AW": "363", "BS": "364", "AI": "365", "DM": "366",
    "CU": "368", "DO": "370", "HT": "372", "TT": "374", "TC": "376",
    # Zone 4: Asia and the Middle East
    "AZ": "400", "KZ": "401", "BT": "402", "IN": "404", "PK": "410", "AF": "412", "LK": "413",
    "MM": "414", "LB": "415", "JO": "416", "SY": "417", "IQ": "418", "KW": "419", "SA": "420",
    "YE": "421", "OM": "422", "AE": "424", "IL": "425", "PS": "425", "BH": "426", "QA": "427",
    "MN": "428", "NP": "429", "IR": "432", "UZ": "434", "TJ": "436", "KG": "437", "TM": "438",
    "JP": "440", "KR": "450", "VN": "452", "HK": "454", "MO": "455", "KH": "456", "LA": "457",
    "CN": "460", "TW": "466", "KP": "467", "BD": "470", "MV": "472",
    # Zone 5: Oceania and South-East Asia
    "MY": "502", "AU": "505", "CC": "505", "CX": "505", "NF": "505", "ID": "510", "TL": "514",
    "PH": "515", "TH": "520", "SG": "525", "BN": "528", "NZ": "530", "MP": "534", "GU": "535",
    "NR": "536", "PG": "537", "TO": "539", "SB": "540", "VU": "541", "FJ": "542", "WF": "543",
    "AS": "544", "KI": "545", "NC": "546", "PF": "547", "CK": "548", "WS": "549", "FM": "550",
    "MH": "551", "PW": "552", "TV": "553", "TK": "554", "NU": "555",
    # Zone 6: Africa
    "EG": "602", "DZ": "603", "MA": "604", "TN": "605", "LY": "606", "GM": "607", "SN": "608",
    "MR": "609", "ML": "610", "GN": "611", "CI": "612", "BF": "613", "NE": "614", "TG": "615",
    "BJ": "616", "MU": "617", "LR": "618", "SL": "619", "GH": "620", "NG": "621", "TD": "622",
    "CF": "623", "CM": "624", "CV": "625", "ST": "626", "GQ": "627", "GA": "628", "CG": "629",
    "CD": "630", "AO": "631", "GW": "632", "SC": "633", "SD": "634", "RW": "635", "ET": "636",
    "SO": "637", "DJ": "638", "KE": "639", "TZ": "640", "UG": "641", "BI": "642", "MZ": "643",
    "ZM": "645", "MG": "646", "RE": "647", "YT": "647", "ZW": "648", "NA": "649", "MW": "650",
    "LS": "651", "BW": "652", "SZ": "653", "KM": "654", "ZA": "655", "ER": "657", "SH": "658",
    "AC": "658", "TA": "658", "SS": "659",
    # Zone 7: Central and South America
    "BZ": "702", "GT": "704", "SV": "706", "HN": "708", "NI": "710", "CR": "712", "PA": "714",
    "PE": "716", "AR": "722", "BR": "724", "CL": "730", "CO": "732", "VE": "734", "BO": "736",
    "GY": "738", "EC": "740", "GF": "742", "PY": "744", "SR": "746", "UY": "748", "FK": "750",
    # Zone 9: British Indian Ocean Territory (Diego Garcia)
    "IO": "995",
}  # fmt: skip


def _digits(phone: str) -> str | None:
    """The ASCII digits of ``phone`` (one leading ``+`` tolerated), or None when it is not all digits."""
    number = phone[1:] if phone.startswith("+") else phone
    if not number or not (number.isascii() and number.isdigit()):
        return None
    return number


def region_of(phone: str) -> str | None:
    """The ISO region (e.g. ``"CH"``) of an international number given as digits without ``+``.

    Uses phonenumbers' ``region_code_for_number``: a country code used by a single region gives that region
    even for an invalid national number; a shared one (1, 7, 44, 262, ...) gives the region whose numbering
    plan the number matches. None when the input is not digits, cannot be parsed, the country code is
    unknown or non-geographic (800, 882, ...), or a shared code's number matches no region's plan.
    """
    number = _digits(phone)
    if number is None:
        return None
    code = _country_code(number)
    if code is None:
        return None
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    if len(regions) == 1:  # the common case, without the cost of parsing the number
        only: str = regions[0]
        return only if len(only) == 2 and only.isalpha() and only != "ZZ" else None
    if number in _shared_code_regions:
        return _shared_code_regions[number]
    region = _parse_region(number)
    if len(_shared_code_regions) >= _SHARED_CODE_REGIONS_MAX:
        _shared_code_regions.clear()
    _shared_code_regions[number] = region
    return region


#: :func:`region_of` of recent numbers under a shared country code, which takes parsing the number (tens of
#: microseconds): a message's reports (intermediate and final, each its region and its network) ask again.
_shared_code_regions: dict[str, str | None] = {}
_SHARED_CODE_REGIONS_MAX = 4096


def _parse_region(number: str) -> str | None:
    try:
        parsed = phonenumbers.parse("+" + number, None)
    except phonenumbers.NumberParseException:
        return None
    region: str | None = phonenumbers.region_code_for_number(parsed)
    if region is None or len(region) != 2 or not region.isalpha() or region == "ZZ":
        return None
    return region


def mcc_of_region(region: str) -> str | None:
    """The ITU-T E.212 mobile country code (3 digits) of an ISO region, case-insensitive; None if unknown.

    See :data:`MCC_BY_REGION` for countries with several codes and territories without their own.
    """
    return MCC_BY_REGION.get(region.strip().upper())


def _country_code(number: str) -> int | None:
    """The E.164 country code that ``number`` (digits) starts with; codes are prefix-free."""
    for size in (1, 2, 3):
        code = int(number[:size]) if len(number) >= size else -1
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code
    return None


def _mcc_of_number(number: str) -> str | None:
    """The MCC of the country of ``number`` (digits): from its region, else from its country code when
    every region sharing that code has the same MCC (e.g. 44 → 234 for a number valid in none of GB, GG,
    IM, JE)."""
    region = region_of(number)
    if region is not None:
        return mcc_of_region(region)
    code = _country_code(number)
    if code is None:
        return None
    mccs = {MCC_BY_REGION.get(r) for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]}
    if len(mccs) != 1:
        return None
    return mccs.pop()


class MccMncTable:
    """Operator-configured number prefixes → mobile network, giving a number's MCC+MNC (HNI).

    Built from a mapping of number prefix (international digits, e.g. ``"4179"``) to either an MNC (2 or 3
    digits, e.g. ``"01"``; the MCC then comes from the number's country) or a full MCC+MNC (5 or 6 digits,
    e.g. ``"311480"``, for networks under a country's second MCC or a foreign one).
    """

    __slots__ = ("_key_len", "_max_len", "_prefixes")

    def __init__(self, prefixes: Mapping[str, str]) -> None:
        """Validate and store ``prefixes``; ValueError for a non-digit prefix or a malformed network code."""
        table: dict[str, str] = {}
        for prefix, code in prefixes.items():
            if not (prefix and prefix.isascii() and prefix.isdigit()):
                raise ValueError(f"number prefix must be digits: {prefix!r}")
            if not (code.isascii() and code.isdigit() and len(code) in (2, 3, 5, 6)):
                raise ValueError(f"prefix {prefix}: MNC must be 2-3 digits (MCC+MNC 5-6 digits): {code!r}")
            table[prefix] = code
        self._prefixes = table
        self._max_len = max((len(p) for p in table), default=0)
        self._key_len = max(self._max_len, 3)  # the configured prefixes and the longest country code

    def __len__(self) -> int:
        return len(self._prefixes)

    def __repr__(self) -> str:
        return f"MccMncTable({self._prefixes!r})"

    def prefix_key(self, phone: str) -> str | None:
        """A prefix of ``phone``'s digits that decides both :func:`region_of` and :meth:`lookup`: numbers with
        the same key get the same answers from both (a key for caching what follows from them).

        None when no prefix decides them: ``phone`` is not digits, or its country code is shared by several
        regions, which the whole number tells apart.
        """
        number = _digits(phone)
        if number is None:
            return None
        code = _country_code(number)
        if code is not None and len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]) > 1:
            return None
        return number[: self._key_len]

    def lookup(self, phone: str) -> str | None:
        """MCC+MNC (e.g. ``"22801"``) of the longest configured prefix of ``phone``.

        Without a matching prefix, the MCC of the number's country alone (e.g. ``"228"``). None when the
        country (hence the MCC) is unknown and no full MCC+MNC is configured for a matching prefix, or when
        ``phone`` is not digits.
        """
        number = _digits(phone)
        if number is None:
            return None
        for size in range(min(len(number), self._max_len), 0, -1):
            code = self._prefixes.get(number[:size])
            if code is None:
                continue
            if len(code) >= 5:
                return code
            mcc = _mcc_of_number(number)
            return None if mcc is None else mcc + code
        return _mcc_of_number(number)
