"""Tests for number → region → MCC and the MCC/MNC prefix table (omnirelay.domain.numbering)."""

from __future__ import annotations

import phonenumbers
import pytest

from omnirelay.domain.numbering import MCC_BY_REGION, MccMncTable, mcc_of_region, region_of

# ---------------------------------------------------------------- region_of


@pytest.mark.parametrize(
    ("phone", "region"),
    [
        ("41793026727", "CH"),
        ("+41793026727", "CH"),
        ("4915112345678", "DE"),
        ("33612345678", "FR"),
        ("12015550123", "US"),
        ("15062345678", "CA"),  # shared country code 1, resolved by area code
        ("16715550123", "GU"),
        ("79161234567", "RU"),
        ("77710009998", "KZ"),  # shared country code 7
        ("447781123456", "GG"),  # shared country code 44
        ("262692123456", "RE"),
        ("262639012345", "YT"),
        ("385911234567", "HR"),
        ("4112", "CH"),  # single-region country code: the region even for an invalid number
    ],
)
def test_region_of(phone: str, region: str) -> None:
    assert region_of(phone) == region


@pytest.mark.parametrize(
    "phone",
    [
        "",
        "+",
        "abc",
        "41 79 302 67 27",
        "+41-79-302-67-27",
        "٤١٧٩٣٠٢٦٧٢٧",  # Arabic-Indic digits are not ASCII digits
        "999123456",  # unassigned country code
        "80012345678",  # +800 is non-geographic ("001"), not an ISO region
        "88213123456",  # +882 international networks
        "447700900123",  # +44 is shared and this (Ofcom drama) number is valid in none of GB/GG/IM/JE
        "1999",  # +1 too short to pick a NANP region
        "4" * 20,  # too long
    ],
)
def test_region_of_unknown(phone: str) -> None:
    assert region_of(phone) is None


# ---------------------------------------------------------------- mcc_of_region


@pytest.mark.parametrize(
    ("region", "mcc"),
    [
        ("CH", "228"),
        ("DE", "262"),
        ("GB", "234"),
        ("US", "310"),
        ("FR", "208"),
        ("HR", "219"),
        ("IT", "222"),
        ("ES", "214"),
        ("NL", "204"),
        ("AT", "232"),
        ("BR", "724"),
        ("IN", "404"),
        ("CA", "302"),
        ("RU", "250"),
        ("KZ", "401"),
        ("JP", "440"),
        ("CN", "460"),
        ("AU", "505"),
        ("ZA", "655"),
        ("AE", "424"),
        ("XK", "221"),
        ("LI", "295"),
        ("ME", "297"),
        ("SS", "659"),
        ("GF", "742"),
        ("GP", "340"),
        ("RE", "647"),
        ("YT", "647"),
        ("GG", "234"),
        ("AX", "244"),
        ("CW", "362"),
        ("PR", "330"),
        ("FK", "750"),
        ("IO", "995"),
        ("ch", "228"),
        (" de ", "262"),
    ],
)
def test_mcc_of_region(region: str, mcc: str) -> None:
    assert mcc_of_region(region) == mcc


@pytest.mark.parametrize("region", ["ZZ", "", "001", "EH", "XX", "CHE"])
def test_mcc_of_region_unknown(region: str) -> None:
    assert mcc_of_region(region) is None


def test_mcc_table_is_well_formed() -> None:
    for region, mcc in MCC_BY_REGION.items():
        assert len(region) == 2 and region.isupper() and region.isalpha(), region
        assert len(mcc) == 3 and mcc.isdigit(), (region, mcc)
        # E.212 geographic zones are 2-7; 9 holds only the British Indian Ocean Territory's 995.
        assert mcc[0] in "234567" or mcc == "995", (region, mcc)


def test_mcc_table_covers_phonenumbers_regions() -> None:
    # Western Sahara has no MCC of its own (its networks are Moroccan); every other region has one.
    missing = set(phonenumbers.SUPPORTED_REGIONS) - set(MCC_BY_REGION)
    assert missing == {"EH"}


def test_mcc_shared_only_where_intended() -> None:
    by_mcc: dict[str, set[str]] = {}
    for region, mcc in MCC_BY_REGION.items():
        by_mcc.setdefault(mcc, set()).add(region)
    shared = {mcc: regions for mcc, regions in by_mcc.items() if len(regions) > 1}
    assert shared == {
        "234": {"GB", "GG", "JE", "IM"},
        "242": {"NO", "SJ"},
        "244": {"FI", "AX"},
        "340": {"GP", "MQ", "BL", "MF"},
        "362": {"CW", "SX", "BQ"},
        "425": {"IL", "PS"},
        "505": {"AU", "CC", "CX", "NF"},
        "647": {"RE", "YT"},
        "658": {"SH", "AC", "TA"},
    }


# ---------------------------------------------------------------- MccMncTable


@pytest.fixture
def table() -> MccMncTable:
    return MccMncTable({"4179": "01", "4178": "02", "41793": "03", "417": "99", "1201555": "260"})


def test_lookup_brief_examples() -> None:
    t = MccMncTable({"4179": "01", "4178": "02"})
    assert t.lookup("41791234567") == "22801"
    assert t.lookup("41781234567") == "22802"
    assert t.lookup("41761234567") == "228"
    assert t.lookup("80012345678") is None


def test_lookup_longest_prefix_wins(table: MccMncTable) -> None:
    assert table.lookup("41793026727") == "22803"
    assert table.lookup("41791234567") == "22801"
    assert table.lookup("41771234567") == "22899"
    assert table.lookup("+41781234567") == "22802"


def test_lookup_three_digit_mnc(table: MccMncTable) -> None:
    assert table.lookup("12015550123") == "310260"


def test_lookup_country_only(table: MccMncTable) -> None:
    assert table.lookup("4915112345678") == "262"
    assert table.lookup("385911234567") == "219"
    assert table.lookup("15062345678") == "302"
    assert table.lookup("212650123456") == "604"


def test_lookup_unknown_country(table: MccMncTable) -> None:
    assert table.lookup("999123456") is None
    assert table.lookup("80012345678") is None
    assert table.lookup("") is None
    assert table.lookup("41 79") is None


def test_lookup_prefix_in_unknown_country_is_none() -> None:
    t = MccMncTable({"800": "01"})
    assert t.lookup("80012345678") is None


def test_lookup_shared_country_code_with_a_single_mcc() -> None:
    # +44 7700 900123 is valid in none of GB/GG/IM/JE, but they all use MCC 234.
    t = MccMncTable({"447700": "30"})
    assert t.lookup("447700900123") == "23430"
    assert MccMncTable({}).lookup("447700900123") == "234"
    # +7 is shared by RU (250) and KZ (401): an unplaceable +7 number has no MCC.
    assert MccMncTable({}).lookup("70000000000") is None


def test_lookup_full_plmn_override() -> None:
    t = MccMncTable({"1201": "311480", "8823": "90112"})
    assert t.lookup("12015550123") == "311480"
    assert t.lookup("88231234567") == "90112"  # a full MCC+MNC needs no known country


def test_table_len_and_empty() -> None:
    assert len(MccMncTable({})) == 0
    assert len(MccMncTable({"4179": "01"})) == 1
    assert MccMncTable({}).lookup("41793026727") == "228"


@pytest.mark.parametrize(
    "prefixes",
    [
        {"": "01"},
        {"+4179": "01"},
        {"41 79": "01"},
        {"4179": "1"},
        {"4179": "0001"},
        {"4179": "1234567"},
        {"4179": "ab"},
        {"4179": ""},
    ],
)
def test_table_rejects_bad_config(prefixes: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        MccMncTable(prefixes)
