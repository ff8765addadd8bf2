"""Delivery reports and log entries built from a message's state: status, error, parts, price, network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from omnirelay.domain import catalogue
from omnirelay.domain.channels import parse_channel
from omnirelay.domain.dates import format_ts
from omnirelay.domain.lifecycle import Phase
from omnirelay.domain.message import Attempt, MessageState
from omnirelay.domain.model import LogEntry, Price, Report, To
from omnirelay.domain.numbering import MccMncTable, region_of
from omnirelay.domain.pricing import PriceList
from omnirelay.domain.smscount import sms_parts
from omnirelay.domain.validation import address_for, main_address


@dataclass(frozen=True)
class Tariffs:
    """Where prices and networks come from."""

    prices: PriceList
    networks: MccMncTable
    facts: dict[tuple[str, str, int], tuple[str | None, float, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """:func:`_phone_facts` by number prefix (:meth:`MccMncTable.prefix_key`), channel and message count."""
    network_cache: dict[str, str | None] = field(default_factory=dict, init=False, repr=False, compare=False)
    """:func:`network_of` by number prefix (:meth:`MccMncTable.prefix_key`)."""


_CACHE_MAX = 10_000


def message_count(channel: str, content: dict[str, Any]) -> int:
    """How many messages a step costs: SMS parts for SMS (with its language and transliteration), one otherwise."""
    if channel == "SMS":
        return sms_parts(content.get("sms") or {})
    return 1


def _phone_facts(address: str, channel: str, count: int, tariffs: Tariffs) -> tuple[str | None, Price]:
    """The network (MCC+MNC) and the price of ``count`` messages to ``address`` on ``channel``."""
    key = tariffs.networks.prefix_key(address)
    if key is None:
        mcc_mnc, price, currency = _phone_facts_of(address, channel, count, tariffs)
    else:
        found = tariffs.facts.get((key, channel, count))
        if found is None:
            found = _phone_facts_of(address, channel, count, tariffs)
            if len(tariffs.facts) >= _CACHE_MAX:
                tariffs.facts.clear()
            tariffs.facts[key, channel, count] = found
        mcc_mnc, price, currency = found
    return mcc_mnc, Price(pricePerMessage=price, currency=currency)


def _phone_facts_of(address: str, channel: str, count: int, tariffs: Tariffs) -> tuple[str | None, float, str]:
    phone_like = address.lstrip("+").isdigit()
    region = region_of(address) if phone_like else None
    mcc_mnc = tariffs.networks.lookup(address) if phone_like else None
    unit = tariffs.prices.price(channel, region)
    return mcc_mnc, round(unit.pricePerMessage * count, 6), unit.currency


def network_of(address: str, tariffs: Tariffs) -> str | None:
    """The MCC+MNC that reports and logs show for ``address`` (None for what is not a phone number)."""
    key = tariffs.networks.prefix_key(address)
    if key is None:  # not a number, or one a prefix cannot place: its own look-up (None for what is not digits)
        return tariffs.networks.lookup(address)
    cache = tariffs.network_cache
    if key in cache:
        return cache[key]
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    found = cache[key] = tariffs.networks.lookup(address)
    return found


class LogColumns(NamedTuple):
    """What GET /omni/1/logs filters on, stored beside each message: its entry's ``from`` and ``mccMnc`` split
    into MCC and MNC (None where the entry shows none)."""

    sender: str | None
    mcc: str | None
    mnc: str | None


def log_columns(channel: str | None, sender: str | None, to: To, tariffs: Tariffs) -> LogColumns:
    """The filter columns of a message at a step of ``channel`` sent from ``sender``, as :func:`build_log` shows
    that step (the same address, hence the same network)."""
    if channel is None:
        return LogColumns(sender, None, None)
    return log_columns_at(address_for(parse_channel(channel), to) or main_address(to) or "", sender, tariffs)


def log_columns_at(address: str, sender: str | None, tariffs: Tariffs) -> LogColumns:
    """:func:`log_columns` of a step whose address is known already."""
    network = network_of(address, tariffs)
    if network is None:
        return LogColumns(sender, None, None)
    return LogColumns(sender, network[:3], network[3:] or None)


def build_report(
    *,
    message_id: str,
    bulk_id: str | None,
    attempt: Attempt,
    address: str,
    state: MessageState,
    content: dict[str, Any],
    callback_data: str | None,
    tariffs: Tariffs,
    now: float,
) -> Report:
    """The report of one attempt (the final one, or a failed-over one for intermediate reports)."""
    status_name = attempt.status or state.status
    error_name = attempt.error or "NO_ERROR"
    count = message_count(attempt.channel, content)
    mcc_mnc, price = _phone_facts(address, attempt.channel, count, tariffs)
    return Report(
        bulkId=bulk_id,
        messageId=message_id,
        to=address,
        sentAt=format_ts(attempt.started_at),
        doneAt=format_ts(attempt.done_at or now),
        messageCount=count,
        mccMnc=mcc_mnc,
        price=price,
        status=catalogue.status(status_name),
        error=catalogue.error(error_name),
        channel=attempt.channel,
        callbackData=callback_data,
    )


def build_log(
    *,
    message_id: str,
    bulk_id: str | None,
    address: str,
    sender: str | None,
    state: MessageState,
    content: dict[str, Any],
    channel: str | None,
    content_field: str | None,
    created_at: float,
    tariffs: Tariffs,
) -> LogEntry:
    """One entry of GET /omni/1/logs."""
    status = catalogue.status(state.status) if state.phase == Phase.DONE else catalogue.PENDING_ENROUTE
    text = None
    count = 1
    price = None
    mcc_mnc = None
    if channel is not None and content_field is not None:
        text = (content.get(content_field) or {}).get("text")
        count = message_count(channel, content)
        mcc_mnc, price = _phone_facts(address, channel, count, tariffs)
        if state.phase == Phase.DONE and not state.attempts:  # refused when accepted: nothing was sent or charged
            price = None
    return LogEntry(
        bulkId=bulk_id,
        messageId=message_id,
        to=address,
        from_=sender,
        text=text,
        sentAt=format_ts(state.sent_at or created_at),
        doneAt=format_ts(state.done_at) if state.done_at else None,
        messageCount=count,
        mccMnc=mcc_mnc,
        price=price,
        status=status,
        channel=channel,
    )


def price_of(address: str, channel: str, content: dict[str, Any], tariffs: Tariffs) -> float:
    """The price a report of ``channel`` to ``address`` shows for ``content`` (as :func:`build_report` prices it)."""
    return _phone_facts(address, channel, message_count(channel, content), tariffs)[1].pricePerMessage
