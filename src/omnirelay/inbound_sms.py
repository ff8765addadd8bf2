"""Inbound SMS from the SMPP connectors to the accounts: routed by our number, stored, pushed, swept.

The connector hands every received part to :meth:`InboundSms.receive`, which gives it to the account whose
``inbound_numbers`` holds its destination (digits compared without ``+``) and stores the batch in one
transaction; the connector acknowledges the SMSC after that returns. A part for a number no account declares
is counted (``omnirelay_smpp_inbound_messages_total{result="unrouted"}``), logged and not stored; one for an
account the config declares but the database does not hold yet fails the batch (the SMSC sends it again).
:meth:`sweep_forever` delivers long messages that stopped getting parts and forgets what the dedupe window no
longer needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from typing import TYPE_CHECKING

from prometheus_client import Counter

from omnirelay.config import Settings
from omnirelay.domain.ids import uuid7
from omnirelay.domain.inbound import InboundMessage, InboundPart, result_body
from omnirelay.store.base import Store

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.inbound")

_COUNTERS: weakref.WeakKeyDictionary[Metrics, Counter] = weakref.WeakKeyDictionary()


def _counter(metrics: Metrics) -> Counter:
    counter = _COUNTERS.get(metrics)
    if counter is None:
        counter = _COUNTERS[metrics] = Counter(
            "omnirelay_smpp_inbound_messages",
            "Inbound SMS by result: parts stored, duplicate (an SMSC's resend, dropped), unrouted (no account has"
            " the number), and messages complete or delivered incomplete (expired)",
            ["result"],
            registry=metrics.registry,
        )
    return counter


def _digits(number: str) -> str:
    return number.strip().lstrip("+")


@dataclasses.dataclass(frozen=True)
class _Owner:
    account: str
    url: str | None
    keywords: tuple[str, ...]


class InboundSms:
    """The inbound sink of the SMPP connectors and the builder of Infobip's inbound-SMS results."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics | None = None) -> None:
        self.store = store
        self.window_s = settings.smpp.inbound_dedupe_seconds
        self.part_timeout_s = settings.smpp.inbound_part_timeout_seconds
        self.currency = settings.pricing.currency
        self.owners = {
            _digits(number): _Owner(a.username, a.inbound_url, tuple(a.inbound_keywords))
            for a in settings.accounts
            for number in a.inbound_numbers
        }
        self._keywords: dict[int, tuple[str, ...]] = {}
        self._ids: dict[str, int] = {}
        self.metrics = metrics
        self._counter = _counter(metrics) if metrics is not None else None

    def _count(self, result: str, n: int = 1) -> None:
        if self._counter is not None and self.metrics is not None and n:
            self.metrics.of(self._counter, result).inc(n)

    async def _account_id(self, username: str) -> int | None:
        found = self._ids.get(username)
        if found is None:
            account = await self.store.account_by_username(username)
            if account is None:
                return None
            found = self._ids[username] = account.id
        return found

    async def receive(self, parts: list[InboundPart]) -> None:
        """Route and store received parts (returns once they are committed; raises when they are not)."""
        routed: list[InboundPart] = []
        for part in parts:
            owner = self.owners.get(_digits(part.destination))
            account_id = await self._account_id(owner.account) if owner is not None else None
            if owner is not None and account_id is None:
                # declared, not made yet (a worker started before `serve` or `api` made the config's accounts):
                # not acknowledged, so the SMSC sends it again
                raise LookupError(f"inbound SMS for {part.destination}: account {owner.account!r} does not exist yet")
            if owner is None or account_id is None:
                log.warning(
                    "inbound SMS from %s to %s dropped: no account declares the number in inbound_numbers",
                    part.source,
                    part.destination,
                )
                self._count("unrouted")
                continue
            self._keywords[account_id] = owner.keywords
            routed.append(dataclasses.replace(part, account_id=account_id, url=owner.url))
        if not routed:
            return
        counts = await self.store.record_inbound(routed, time.time(), self.window_s, self.build)
        self._count("stored", counts.stored)
        self._count("duplicate", counts.duplicates)
        self._count("complete", counts.completed)

    def build(self, message: InboundMessage) -> tuple[str, bytes]:
        """A new message id and Infobip's result object for a message (called inside the store's transaction)."""
        message_id = uuid7()
        keywords = self._keywords.get(message.account_id, ())
        return message_id, result_body(message_id, message, keywords, 0.0, self.currency)

    async def sweep(self) -> int:
        """Deliver long messages that waited too long for their parts; returns how many."""
        for owner in self.owners.values():  # a restart: the build of a swept message needs its keywords
            account_id = await self._account_id(owner.account)
            if account_id is not None:
                self._keywords[account_id] = owner.keywords
        expired = await self.store.sweep_inbound(time.time(), self.part_timeout_s, self.window_s, self.build)
        if expired:
            log.info("%d inbound SMS delivered without all their parts (waited %g s)", expired, self.part_timeout_s)
        self._count("expired", expired)
        return expired

    async def sweep_forever(self) -> None:
        """:meth:`sweep` every quarter of the part timeout (at most every 30 s), until cancelled."""
        every = max(0.2, min(30.0, self.part_timeout_s / 4))
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inbound SMS sweep failed; trying again later")
