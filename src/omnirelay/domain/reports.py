"""Delivery reports and log entries built from a message's state: status, error, parts, price, network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omnirelay.domain import catalogue
from omnirelay.domain.dates import format_ts
from omnirelay.domain.message import Attempt, MessageState
from omnirelay.domain.model import LogEntry, Price, Report
from omnirelay.domain.numbering import MccMncTable, region_of
from omnirelay.domain.pricing import PriceList
from omnirelay.domain.smscount import sms_parts


@dataclass(frozen=True)
class Tariffs:
    """Where prices and networks come from."""

    prices: PriceList
    networks: MccMncTable
    facts: dict[tuple[str, str, int], tuple[str | None, float, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """:func:`_phone_facts` by number prefix (:meth:`MccMncTable.prefix_key`), channel and message count."""


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
    status = catalogue.status(state.status) if state.phase == "DONE" else catalogue.PENDING_ENROUTE
    text = None
    count = 1
    price = None
    mcc_mnc = None
    if channel is not None and content_field is not None:
        text = (content.get(content_field) or {}).get("text")
        count = message_count(channel, content)
        mcc_mnc, price = _phone_facts(address, channel, count, tariffs)
        if state.phase == "DONE" and not state.attempts:  # refused when accepted: nothing was sent or charged
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
