"""The logs' filter columns are what the log entry shows: the same network as ``build_log`` computes, for numbers
under a configured prefix, under a country code several regions share, and for addresses that are no number."""

from __future__ import annotations

import pytest

from omnirelay.domain.channels import parse_channel
from omnirelay.domain.message import MessageState
from omnirelay.domain.model import To
from omnirelay.domain.numbering import MccMncTable
from omnirelay.domain.pricing import PriceList
from omnirelay.domain.reports import Tariffs, build_log, log_columns, network_of
from omnirelay.domain.validation import address_for, main_address

PREFIXES = {"4179": "01", "4176": "02", "1415": "310410", "447700": "30"}
TOS = [
    To(phoneNumber="41791234567"),
    To(phoneNumber="+41761234567"),
    To(phoneNumber="41441234567"),
    To(phoneNumber="4915112345678"),
    To(phoneNumber="14155550100"),
    To(phoneNumber="16135550100"),  # +1, Canada
    To(phoneNumber="447700900123"),
    To(phoneNumber="447911123456"),
    To(phoneNumber="79161234567"),  # +7, Russia
    To(phoneNumber="77011234567"),  # +7, Kazakhstan
    To(emailAddress="someone@example.com"),
    To(phoneNumber="41791234567", emailAddress="someone@example.com"),
]


@pytest.mark.parametrize("channel", ["SMS", "WHATSAPP", "EMAIL"])
def test_columns_are_the_entrys_network_and_sender(channel: str) -> None:
    tariffs = Tariffs(PriceList("EUR", 0.0, []), MccMncTable(PREFIXES))
    for _ in range(2):  # the second time from the cache
        for to in TOS:
            # the address GET /omni/1/logs shows (api/reports.py)
            address = address_for(parse_channel(channel), to) or main_address(to) or ""
            entry = build_log(
                message_id="m", bulk_id=None, address=address, sender="S", state=MessageState(),
                content={}, channel=channel, content_field="sms", created_at=0.0, tariffs=tariffs,
            )
            sender, mcc, mnc = log_columns(channel, "S", to, tariffs)
            assert sender == entry.from_ == "S"
            assert (mcc + (mnc or "") if mcc else None) == entry.mccMnc, (to, channel)


def test_network_of_what_is_not_a_number() -> None:
    tariffs = Tariffs(PriceList("EUR", 0.0, []), MccMncTable(PREFIXES))
    assert network_of("", tariffs) is None
    assert network_of("4179abc", tariffs) is None
    assert network_of("4179123456", tariffs) == "22801"
    assert network_of("4179abc", tariffs) is None  # a cached head does not make it a number
