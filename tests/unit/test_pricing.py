"""Tests for per-message prices (omnirelay.domain.pricing)."""

from __future__ import annotations

import math

import msgspec
import pytest

from omnirelay.domain.channels import Channel
from omnirelay.domain.pricing import PriceEntry, PriceList, UnitPrice


@pytest.fixture
def prices() -> PriceList:
    return PriceList(
        "EUR",
        default=0.05,
        entries=[
            ("SMS", "CH", 0.07),
            ("SMS", None, 0.04),
            (None, "CH", 0.02),
            PriceEntry(channel="WHATSAPP", country="DE", price=0.01),
            PriceEntry(channel=None, country="US", price=0.009),
        ],
    )


def test_price_wire_names() -> None:
    price = UnitPrice(pricePerMessage=0.01, currency="EUR")
    assert msgspec.json.encode(price) == b'{"pricePerMessage":0.01,"currency":"EUR"}'
    assert msgspec.json.decode(b'{"pricePerMessage":0.5,"currency":"USD"}', type=UnitPrice) == UnitPrice(0.5, "USD")


def test_price_is_frozen_and_hashable() -> None:
    price = UnitPrice(pricePerMessage=0.01, currency="EUR")
    with pytest.raises(AttributeError):
        price.currency = "USD"  # type: ignore[misc]
    assert hash(price) == hash(UnitPrice(0.01, "EUR"))


@pytest.mark.parametrize(
    ("channel", "region", "expected"),
    [
        ("SMS", "CH", 0.07),  # channel + country
        ("SMS", "DE", 0.04),  # channel only
        ("SMS", None, 0.04),  # unknown region: channel only
        ("VIBER", "CH", 0.02),  # country only
        ("WHATSAPP", "CH", 0.02),  # country only (WHATSAPP has an entry, but for DE)
        ("WHATSAPP", "DE", 0.01),  # channel + country
        ("EMAIL", "US", 0.009),  # country only
        ("VIBER", "DE", 0.05),  # nothing matches: default
        ("VIBER", None, 0.05),
        ("WHATSAPP", None, 0.05),  # channel + country entries need a country
    ],
)
def test_most_specific_match_wins(
    prices: PriceList, channel: str, region: str | None, expected: float
) -> None:
    assert prices.price(channel, region) == UnitPrice(pricePerMessage=expected, currency="EUR")


def test_case_insensitive_and_channel_enum(prices: PriceList) -> None:
    assert prices.price(Channel.SMS, "CH").pricePerMessage == 0.07
    assert prices.price("sms", "ch").pricePerMessage == 0.07
    assert prices.price("WhatsApp", "de").pricePerMessage == 0.01
    assert PriceList("eur").currency == "EUR"


def test_empty_region_is_unknown(prices: PriceList) -> None:
    assert prices.price("SMS", "").pricePerMessage == 0.04


def test_defaults() -> None:
    empty = PriceList("USD")
    assert empty.default == 0.0
    assert empty.price("SMS", "CH") == UnitPrice(pricePerMessage=0.0, currency="USD")
    assert PriceList("CHF", default=0.1).price("SMS", None) == UnitPrice(0.1, "CHF")


def test_accessors(prices: PriceList) -> None:
    assert prices.currency == "EUR"
    assert prices.default == 0.05


def test_price_is_float() -> None:
    p = PriceList("EUR", default=1, entries=[("SMS", None, 2)]).price("SMS", None)
    assert isinstance(p.pricePerMessage, float) and p.pricePerMessage == 2.0
    assert msgspec.json.encode(p) == b'{"pricePerMessage":2.0,"currency":"EUR"}'


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"currency": ""}, "currency"),
        ({"currency": "EUR", "default": -0.01}, "non-negative"),
        ({"currency": "EUR", "default": math.nan}, "non-negative"),
        ({"currency": "EUR", "entries": [("SMS", "CH", math.inf)]}, "non-negative"),
        ({"currency": "EUR", "entries": [("SMS", "CH", -1.0)]}, "non-negative"),
        ({"currency": "EUR", "entries": [(None, None, 0.1)]}, "default"),
        ({"currency": "EUR", "entries": [("", "CH", 0.1)]}, "empty"),
        ({"currency": "EUR", "entries": [("SMS", "CH", 0.1), ("sms", "ch", 0.2)]}, "duplicate"),
        ({"currency": "EUR", "entries": [(None, "CH", 0.1), PriceEntry(None, "CH", 0.2)]}, "duplicate"),
    ],
)
def test_rejects_bad_config(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PriceList(**kwargs)  # type: ignore[arg-type]
