"""SMS national language tables (``sms.language``) and transliteration (``sms.transliteration``): the coding chosen,
the part counts Infobip documents, and the octets and UDH the SMPP connector sends for them."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnirelay.connectors.smpp.text import gsm7_decode, gsm7_encode, message_parts
from omnirelay.domain import gsm7
from omnirelay.domain.model import AdvancedRequest, Step
from omnirelay.domain.reports import message_count
from omnirelay.domain.smscount import Coding, choose_coding, count_parts, sms_parts, sms_text, split_parts
from omnirelay.domain.transliteration import SCHEMES, transliterate
from omnirelay.domain.validation import Accepted, Limits, prepare_send

#: Infobip's example of ``sms.language`` (its OpenAPI document): one SMS with the Turkish tables.
TURKISH = "Artık Ulusal Dil Tanımlayıcısı ile Türkçe karakterli smslerinizi rahatlıkla iletebilirsiniz."
GSM_DEFAULT = set(gsm7.DEFAULT) - {"\x1b"} | set(gsm7.DEFAULT_EXTENSION.values())

TR, ES, PT = 1, 2, 3


def parts(sms: dict[str, object]) -> int:
    return sms_parts(sms)


# --- the coding and the part count ---------------------------------------------------------------


def test_infobips_turkish_example_is_one_part() -> None:
    assert count_parts(TURKISH) == 2  # UCS-2: 92 characters, 70 a part
    assert parts({"text": TURKISH, "language": {"languageCode": "TR"}}) == 1
    assert parts({"text": TURKISH, "transliteration": "TURKISH"}) == 1
    assert parts({"text": TURKISH, "transliteration": "TURKISH", "language": {"languageCode": "TR"}}) == 1
    # the example as sent: transliterated first, after which the default alphabet carries it (no UDH needed)
    text, coding = sms_text({"text": TURKISH, "transliteration": "TURKISH", "language": {"languageCode": "TR"}})
    assert coding == Coding("GSM7") and text.startswith("Artik Ulusal Dil Tanimlayicisi ile Türkce")


def test_language_none_or_absent_keeps_ucs2() -> None:
    assert parts({"text": TURKISH}) == 2
    assert parts({"text": TURKISH, "language": {"languageCode": "NONE"}}) == 2
    assert sms_text({"text": TURKISH, "language": {}})[1] == Coding("UCS2")


@pytest.mark.parametrize(
    ("coding", "single", "multi"),
    [(Coding("GSM7", 0, TR), 155, 149), (Coding("GSM7", TR, 0), 155, 149), (Coding("GSM7", TR, TR), 152, 146)],
    ids=["single shift", "locking shift", "both"],
)
def test_part_sizes_with_national_tables(coding: Coding, single: int, multi: int) -> None:
    text = "a" * single
    assert count_parts(text, coding) == 1
    assert count_parts(text + "a", coding) == 2
    assert [len(p) for p in split_parts("a" * (2 * multi + 1), coding)] == [multi, multi, 1]


def test_the_cheapest_tables_are_chosen() -> None:
    # ş costs 2 septets in the single shift table, 1 in the locking shift table
    assert choose_coding("ş" * 100, "TR") == Coding("GSM7", TR, 0)
    assert choose_coding("Merhaba ş", "TR") == Coding("GSM7", 0, TR)  # one part either way: fewer tables
    assert choose_coding("ş{" * 75, "TR") == Coding("GSM7", TR, 0)  # the default extension table has {
    assert choose_coding("∞Φ" * 40, "PT") == Coding("GSM7", PT, PT)  # ∞ only in the one table, Φ only in the other
    assert choose_coding("plain text", "TR") == Coding("GSM7")  # no UDH when the default alphabet is enough
    assert choose_coding("Привет", "TR") == Coding("UCS2")  # no table carries Cyrillic


def test_legacy_shift_flags_rule_tables_out() -> None:
    assert choose_coding("ş" * 100, "TR", locking_shift=False) == Coding("GSM7", 0, TR)
    assert choose_coding("ş" * 100, "TR", single_shift=False) == Coding("GSM7", TR, 0)
    assert choose_coding("ş", "TR", single_shift=False, locking_shift=False) == Coding("UCS2")


def test_spanish_has_a_single_shift_table_only() -> None:
    text = "Canción de acción, ¿qué más?" * 3
    assert count_parts(text) == 2  # ó, é, á: UCS-2
    assert choose_coding(text, "ES") == Coding("GSM7", 0, ES)
    assert parts({"text": text, "language": {"languageCode": "ES"}}) == 1
    assert choose_coding("á" * 200, "ES", single_shift=False) == Coding("UCS2")  # Annex A.3.2 is void


def test_portuguese_and_autodetect() -> None:
    text = "Não há razão para não usar a função de avaliação." * 2
    assert choose_coding(text, "PT") in (Coding("GSM7", 0, PT), Coding("GSM7", PT, 0), Coding("GSM7", PT, PT))
    assert count_parts(text, choose_coding(text, "PT")) == 1
    assert choose_coding(text, "AUTODETECT") == choose_coding(text, "PT")
    assert choose_coding("ğ" * 10, "AUTODETECT") in (Coding("GSM7", 0, TR), Coding("GSM7", TR, 0))


@given(st.text(alphabet=sorted(set(gsm7.LOCKING_SHIFT[TR]) - {"\x1b"} | set(gsm7.SINGLE_SHIFT[TR].values())),
               max_size=500))
def test_parts_fit_140_octets_with_their_udh(text: str) -> None:
    """Every part, packed as the SMSC sends it (UDH, fill bits, 7-bit septets), fits one 140-octet SMS."""
    coding = choose_coding(text, "TR")
    encoded = message_parts(text, 1, 0, coding)
    for payload in encoded.payloads:
        udh = payload[0] + 1 if encoded.esm_class & 0x40 else 0
        septets = len(payload) - udh
        fill = (7 - (udh * 8) % 7) % 7
        assert udh + math.ceil((fill + septets * 7) / 8) <= 140
        assert math.ceil((udh * 8 + fill) / 7) + septets <= 160


# --- octets and UDH -------------------------------------------------------------------------------


@pytest.mark.parametrize(("locking", "single"), [(0, TR), (TR, 0), (TR, TR), (0, ES), (0, PT), (PT, 0), (PT, PT)])
def test_round_trip_through_every_table(locking: int, single: int) -> None:
    chars = (set(gsm7.alphabet(locking)) - {"\x1b"}) | set(gsm7.extension(single).values())
    text = "".join(sorted(chars))
    assert gsm7_decode(gsm7_encode(text, locking, single), locking, single) == text


def test_known_national_septets() -> None:
    assert gsm7_encode("ş", 0, TR) == b"\x1b\x73"  # A.2.1: ş at 0x73 of the single shift table
    assert gsm7_encode("ş", TR, 0) == b"\x1d"  # A.3.1: ş at 0x1D of the locking shift table
    assert gsm7_encode("İç", TR, 0) == b"\x40\x60"
    assert gsm7_encode("á", 0, ES) == b"\x1b\x61"
    assert gsm7_encode("ã€", PT, 0) == b"\x7b\x18"


def test_single_part_with_a_table_carries_its_udh() -> None:
    encoded = message_parts("Teşekkürler", 7, 0, Coding("GSM7", 0, TR))
    assert (encoded.data_coding, encoded.esm_class) == (0, 0x40)
    (payload,) = encoded.payloads
    assert payload[:4] == b"\x03\x24\x01\x01"
    assert gsm7_decode(payload[4:], 0, TR) == "Teşekkürler"


def test_concatenated_parts_carry_both_tables_after_the_reference() -> None:
    text = "ş{" * 100
    coding = Coding("GSM7", TR, TR)
    encoded = message_parts(text, 0x1A5, 241, coding)
    assert encoded.data_coding == 241 and encoded.esm_class == 0x40
    total = len(encoded.payloads)
    assert total == count_parts(text, coding)
    for seq, payload in enumerate(encoded.payloads, 1):
        assert payload[:12] == bytes((11, 0x00, 3, 0xA5, total, seq, 0x24, 1, TR, 0x25, 1, TR))
        assert len(payload) - 12 <= 146
    assert "".join(gsm7_decode(p[12:], TR, TR) for p in encoded.payloads) == text


# --- transliteration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "text", "expected"),
    [
        ("TURKISH", "Işık ğüzel Şule", "Isik güzel Sule"),
        ("GREEK", "Καλημέρα", "KAΛHMEPA"),
        ("CYRILLIC", "Щука и ёж", "Shchuka i yozh"),
        ("SERBIAN_CYRILLIC", "Ђорђе Љубић", "Djordje Ljubic"),
        ("BULGARIAN_CYRILLIC", "Щастие", "Shtastie"),
        ("CENTRAL_EUROPEAN", "Łódź, Žluťoučký kůň", "Lodz, Zlutoucky kun"),
        ("BALTIC", "Rīga, Šiauliai, Tõrva", "Riga, Siauliai, Torva"),
        ("PORTUGUESE", "Ação, coração", "Acao, coracao"),
        ("COLOMBIAN", "Bogotá, María", "Bogota, Maria"),
        ("NON_UNICODE", "“Crème brûlée” – ok…", '"Crème brulée" - ok...'),
        ("NONE", "Işık", "Işık"),
    ],
)
def test_transliteration_examples(scheme: str, text: str, expected: str) -> None:
    assert transliterate(text, scheme) == expected


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_replacement_is_gsm7(scheme: str) -> None:
    for source, target in SCHEMES[scheme].items():
        assert len(target) <= 4
        assert set(target) <= GSM_DEFAULT, (scheme, source, target)


def test_all_turns_mixed_scripts_into_gsm7() -> None:
    text = "Işık Καλημέρα Щука Łódź Rīga Ação “x”"
    assert set(transliterate(text, "ALL")) <= GSM_DEFAULT


# --- the request: validation, messageCount -------------------------------------------------------


def _plan(sms: dict[str, object]) -> Accepted | dict[str, list[str]]:
    req = msgspec.convert({"destinations": [{"to": {"phoneNumber": "905321234567"}}], "sms": sms}, AdvancedRequest)
    return prepare_send(req, [Step(channel="SMS", from_="InfoSMS")], 1_700_000_000.0, Limits())


def test_language_and_transliteration_reach_the_stored_content_and_the_message_count() -> None:
    plan = _plan({"text": TURKISH, "transliteration": "TURKISH", "language": {"languageCode": "TR"}})
    assert isinstance(plan, Accepted)
    assert plan.content["sms"] == {"text": TURKISH, "transliteration": "TURKISH", "language": {"languageCode": "TR"}}
    assert message_count("SMS", plan.content) == 1
    assert message_count("SMS", {"sms": {"text": TURKISH}}) == 2


def test_the_25_part_limit_counts_with_the_language() -> None:
    long_turkish = "ş" * (25 * 146)  # 25 parts with the Turkish locking shift table, 55 in UCS-2
    assert isinstance(_plan({"text": long_turkish, "language": {"languageCode": "TR"}}), Accepted)
    errors = _plan({"text": long_turkish})
    assert isinstance(errors, dict) and set(errors) == {"sms.text"}
    assert "needs 55" in errors["sms.text"][0]


def test_more_parts_than_a_concatenation_header_numbers_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="256 parts"):
        message_parts("x" * (255 * 153 + 1), 1)
    assert len(message_parts("x" * (255 * 153), 1).payloads) == 255
