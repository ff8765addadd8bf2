"""Per-message prices by channel and destination country, reported as Infobip's ``price`` object."""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

__all__ = ["PriceEntry", "PriceList", "UnitPrice"]


class UnitPrice(msgspec.Struct, frozen=True):
    """The price of one message from a price list, as Infobip reports show it
    (``{"pricePerMessage": 0.01, "currency": "EUR"}``)."""

    pricePerMessage: float
    currency: str


class PriceEntry(msgspec.Struct, frozen=True):
    """One configured price: for a channel (None: any), a destination ISO region (None: any), or both."""

    channel: str | None
    country: str | None
    price: float


def _check_price(value: float, what: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite non-negative number: {value!r}")
    return number


def _norm(value: str | None) -> str | None:
    return None if value is None else value.strip().upper()


class PriceList:
    """Prices in one currency; the most specific entry wins.

    Order of precedence: channel + country, then channel only, then country only, then ``default``.
    Channel names and regions compare case-insensitively (``Channel.SMS`` and ``"sms"`` are the same).
    """

    __slots__ = ("_currency", "_default", "_prices")

    def __init__(
        self,
        currency: str,
        default: float = 0.0,
        entries: Iterable[PriceEntry | tuple[str | None, str | None, float]] = (),
    ) -> None:
        """ValueError for an empty currency, a negative or non-finite price, an entry with neither channel
        nor country (that is ``default``), or two entries for the same channel and country."""
        code = currency.strip().upper()
        if not code:
            raise ValueError("currency must not be empty")
        self._currency = code
        self._default = _check_price(default, "default price")
        self._prices: dict[tuple[str | None, str | None], float] = {}
        for entry in entries:
            if isinstance(entry, PriceEntry):
                channel, country, price = entry.channel, entry.country, entry.price
            else:
                channel, country, price = entry
            key = (_norm(channel), _norm(country))
            if key == (None, None):
                raise ValueError("a price entry needs a channel or a country; use default otherwise")
            if "" in key:
                raise ValueError(f"empty channel or country in price entry {entry!r}")
            if key in self._prices:
                raise ValueError(f"duplicate price entry for channel {key[0]!r}, country {key[1]!r}")
            self._prices[key] = _check_price(price, f"price for {key}")

    @property
    def currency(self) -> str:
        """The ISO 4217 currency every price is in."""
        return self._currency

    @property
    def default(self) -> float:
        """The price when no entry matches."""
        return self._default

    def price(self, channel: str, region: str | None) -> UnitPrice:
        """The per-message price for ``channel`` to a destination in ``region`` (None when unknown).

        Most specific match wins: channel + country > channel only > country only > default.
        """
        ch = _norm(channel)
        country = _norm(region) or None
        keys = ((ch, country), (ch, None), (None, country)) if country is not None else ((ch, None),)
        for key in keys:
            found = self._prices.get(key)
            if found is not None:
                return UnitPrice(pricePerMessage=found, currency=self._currency)
        return UnitPrice(pricePerMessage=self._default, currency=self._currency)
