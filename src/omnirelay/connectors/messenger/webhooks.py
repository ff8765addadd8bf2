"""The Messenger webhook: ``/webhooks/messenger/{sender}``, the URL to register in the Meta app for a page.

``GET`` answers Meta's verification handshake (``hub.verify_token``). ``POST`` takes ``page`` notifications
signed with the app secret (``X-Hub-Signature-256``, checked over the raw body in constant time before
anything is read): ``message_deliveries`` become DELIVERED receipts, ``message_reads`` SEEN receipts, and
messages users send become Infobip's inbound-message webhook for the account of the page.

A delivery names its mids; without them (and for every read) it has a ``watermark``: every message to that
user sent before that time. Those messages are the FACEBOOK submissions of that user stored before the
watermark (within :data:`WATERMARK_WINDOW_S`), found by the user's prefix of the provider id.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from omnirelay.config import AccountConfig, MessengerConfig, MessengerPageConfig
from omnirelay.connectors.counters import CounterSpec
from omnirelay.connectors.messenger.connector import CHANNEL, provider_id
from omnirelay.connectors.meta import SIGNATURE_HEADER, MetaWebhookReceiver, signature_ok
from omnirelay.connectors.webhooks import InboundItem, inbound_result, inbound_webhook
from omnirelay.domain.delivery import Receipt
from omnirelay.domain.lifecycle import Outcome
from omnirelay.store.base import Store

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.messenger")

WATERMARK_WINDOW_S = 7 * 86400.0
"""How far before a watermark messages are looked for (Messenger's window for sending is 24 hours)."""
WATERMARK_LIMIT = 500
"""At most this many messages are marked by one watermark (the newest)."""
MARKED_CACHE = 100_000
"""Provider ids this process already marked by a watermark: a user's every read repeats all earlier ones."""

__all__ = ["SIGNATURE_HEADER", "MessengerWebhookRoutes", "signature_ok"]


class _Party(msgspec.Struct):
    id: str = ""


class _Delivery(msgspec.Struct):
    mids: list[str] = msgspec.field(default_factory=list)
    watermark: float | None = None


class _Read(msgspec.Struct):
    watermark: float | None = None


class _MessengerEvent(msgspec.Struct):
    sender: _Party = msgspec.field(default_factory=_Party)
    recipient: _Party = msgspec.field(default_factory=_Party)
    timestamp: float | None = None
    delivery: _Delivery | None = None
    read: _Read | None = None
    message: dict[str, Any] | None = None


class _MessengerEntry(msgspec.Struct):
    id: str | None = None
    time: float | None = None
    messaging: list[_MessengerEvent] = msgspec.field(default_factory=list)


class _MessengerNotification(msgspec.Struct):
    object: str | None = None
    entry: list[_MessengerEntry] = msgspec.field(default_factory=list)


_decoder = msgspec.json.Decoder(_MessengerNotification)
_encoder = msgspec.json.Encoder()


def inbound_content(message: dict[str, Any]) -> dict[str, Any]:
    """The ``message`` object of Infobip's inbound webhook for one Messenger message."""
    attachments = message.get("attachments")
    if isinstance(attachments, list) and attachments and isinstance(attachments[0], dict):
        first = attachments[0]
        kind = str(first.get("type", "")).upper()
        payload = first.get("payload") if isinstance(first.get("payload"), dict) else {}
        content: dict[str, Any] = {"type": {"FILE": "DOCUMENT"}.get(kind, kind) or "UNSUPPORTED"}
        if isinstance(payload, dict) and payload.get("url"):
            content["url"] = payload["url"]
        if message.get("text"):
            content["caption"] = message["text"]
        return content
    if isinstance(message.get("text"), str):
        return {"type": "TEXT", "text": message["text"]}
    return {"type": "UNSUPPORTED"}


def inbound_report(event: _MessengerEvent, page: MessengerPageConfig, now: float) -> dict[str, Any]:
    """Infobip's inbound-message webhook body for one message a user sent to the page."""
    message = event.message or {}
    received = event.timestamp / 1000 if event.timestamp else now
    mid = str(message.get("mid", ""))
    content = inbound_content(message)
    return inbound_webhook(inbound_result(event.sender.id, page.sender, CHANNEL, received, mid, content))


EVENTS = CounterSpec(
    "omnirelay_messenger_webhooks",
    "Messenger webhook events by page and kind (delivery, read, inbound, bad_signature, …)",
    ("sender", "status"),
)


class MessengerWebhookRoutes(MetaWebhookReceiver[MessengerPageConfig, _MessengerNotification]):
    """Handlers of ``/webhooks/messenger/{sender}`` for the pages of the Messenger config."""

    provider = "Messenger"
    sender_kind = "Messenger page"
    notification_kind = "Messenger notification"
    events = EVENTS

    def __init__(
        self, config: MessengerConfig, accounts: list[AccountConfig], store: Store, metrics: Metrics | None = None
    ) -> None:
        super().__init__({p.sender: p for p in config.pages}, store, metrics, accounts)
        self.by_page_id = {p.page_id: p for p in config.pages}
        self._already: OrderedDict[str, Outcome] = OrderedDict()
        """provider id -> the outcome a watermark already gave it (DELIVERED or SEEN), oldest first."""

    def decode(self, body: bytes) -> _MessengerNotification:
        return _decoder.decode(body)

    async def handle(self, sender: MessengerPageConfig, notification: _MessengerNotification) -> web.StreamResponse:
        """Receipts for the engine and inbound messages for the account, stored before the 200 (Meta sends a
        notification again until it gets one)."""
        now = time.time()
        receipts: list[Receipt] = []
        inbound: list[InboundItem] = []
        for entry in notification.entry:
            owner = self.by_page_id.get(entry.id or "", sender)  # one app's webhook carries all of its pages
            for event in entry.messaging:
                psid = event.sender.id
                if event.delivery is not None:
                    self.count(owner.sender, "delivery")
                    receipts += await self._marked(
                        psid, event.delivery.mids, event.delivery.watermark, Outcome.DELIVERED
                    )
                if event.read is not None:
                    self.count(owner.sender, "read")
                    receipts += await self._marked(psid, [], event.read.watermark, Outcome.SEEN)
                if event.message is not None and not event.message.get("is_echo"):
                    self.count(owner.sender, "inbound")
                    item = await self._inbound_item(event, owner, now)
                    if item is not None:
                        inbound.append(item)
        if receipts:
            await self.store.record_receipts(receipts, now)
            self._remember_marked(receipts)
        if inbound:
            await self.store.push_webhooks(inbound, now)
        return web.json_response({"receipts": len(receipts), "inbound": len(inbound)})

    def _remember_marked(self, receipts: list[Receipt]) -> None:
        for receipt in receipts:
            if self._already.get(receipt.provider_id) != Outcome.SEEN:
                self._already[receipt.provider_id] = receipt.outcome
            self._already.move_to_end(receipt.provider_id)
        while len(self._already) > MARKED_CACHE:
            self._already.popitem(last=False)

    async def _marked(self, psid: str, mids: list[str], watermark: float | None, outcome: Outcome) -> list[Receipt]:
        """Receipts for the messages a delivery or read names: its mids, else every message to the user
        stored before the watermark (milliseconds)."""
        if not psid:
            return []
        ids = [provider_id(psid, mid) for mid in mids]
        if not ids and watermark:
            until = watermark / 1000
            found = await self.store.provider_ids_like(
                CHANNEL, f"{psid}:", until - WATERMARK_WINDOW_S, until, WATERMARK_LIMIT
            )
            # what an earlier watermark already marked as much changes nothing: not sent to the engine again
            ids = [pid for pid in found if self._already.get(pid) not in (outcome, Outcome.SEEN)]
        return [Receipt(CHANNEL, pid, outcome) for pid in ids]

    async def _inbound_item(self, event: _MessengerEvent, page: MessengerPageConfig, now: float) -> InboundItem | None:
        target = await self.inbound_account(page.sender, page.account)
        if target is None:
            return None
        account_id, inbound_url = target
        mid = str((event.message or {}).get("mid", ""))
        body = _encoder.encode(inbound_report(event, page, now))
        return (account_id, f"inbound.fb.{mid}", inbound_url, "application/json", body)
