"""The LINE webhook: ``/webhooks/line/{sender}``, the webhook URL to set in the LINE channel's console.

Every request is signed with the channel secret (``X-Line-Signature``: the base64 HMAC-SHA256 of the raw
body), checked in constant time before anything is read. LINE sends no delivery or read events for push
messages, so nothing here becomes a receipt. ``unfollow`` (the user blocked the account, after which LINE still
answers pushes to them 200 and shows nothing) is remembered, so that the connector fails later steps to that
user over at once instead of counting them delivered; ``follow`` (added again) forgets it. Messages users
send become Infobip's inbound-message webhook for the account of the channel (once per message, also when
LINE redelivers). All of it is stored before the 200. The verification request LINE sends when the URL is
set (no events) is answered 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from omnirelay.config import AccountConfig, LineChannelConfig, LineConfig
from omnirelay.connectors.counters import CounterSpec
from omnirelay.connectors.line.connector import BLOCKED_ACCOUNT, BLOCKED_FOR_S, CHANNEL, blocked_key
from omnirelay.connectors.webhooks import InboundItem, WebhookReceiver, inbound_result, inbound_webhook
from omnirelay.store.base import Store

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.line")

SIGNATURE_HEADER = "X-Line-Signature"


def sign(channel_secret: str, body: bytes) -> str:
    """The ``X-Line-Signature`` LINE sends with ``body``: base64 of its HMAC-SHA256 with the channel secret."""
    return base64.b64encode(hmac.new(channel_secret.encode(), body, hashlib.sha256).digest()).decode()


def signature_ok(channel_secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of the raw ``body`` (compared in constant time)."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode(), sign(channel_secret, body).encode())


class _Source(msgspec.Struct):
    type: str | None = None
    userId: str | None = None


class _LineEvent(msgspec.Struct):
    type: str = ""
    timestamp: float | None = None
    source: _Source | None = None
    webhookEventId: str | None = None
    message: dict[str, Any] | None = None


class _LineNotification(msgspec.Struct):
    destination: str | None = None
    events: list[_LineEvent] = msgspec.field(default_factory=list)


_decoder = msgspec.json.Decoder(_LineNotification)
_encoder = msgspec.json.Encoder()

_KINDS = {"image": "IMAGE", "video": "VIDEO", "audio": "AUDIO", "file": "DOCUMENT", "sticker": "STICKER"}


def inbound_content(message: dict[str, Any]) -> dict[str, Any]:
    """The ``message`` object of Infobip's inbound webhook for one LINE message event."""
    kind = message.get("type")
    if kind == "text":
        return {"type": "TEXT", "text": str(message.get("text", ""))}
    if kind == "location":
        keys = ("latitude", "longitude", "title", "address")
        content = {k: message[k] for k in keys if message.get(k) is not None}
        if "title" in content:
            content["name"] = content.pop("title")
        return {"type": "LOCATION", **content}
    if isinstance(kind, str) and kind in _KINDS:
        content = {"type": _KINDS[kind]}
        if kind == "sticker":
            content.update({k: str(message[k]) for k in ("packageId", "stickerId") if message.get(k) is not None})
        provider = message.get("contentProvider")
        if isinstance(provider, dict) and provider.get("originalContentUrl"):
            content["url"] = provider["originalContentUrl"]
        return content
    return {"type": "UNSUPPORTED"}


def inbound_report(event: _LineEvent, channel: LineChannelConfig, now: float) -> dict[str, Any]:
    """Infobip's inbound-message webhook body for one message a user sent to the channel."""
    message = event.message or {}
    user = event.source.userId if event.source else ""
    received = event.timestamp / 1000 if event.timestamp else now
    content = inbound_content(message)
    return inbound_webhook(inbound_result(user, channel.sender, CHANNEL, received, str(message.get("id", "")), content))


EVENTS = CounterSpec(
    "omnirelay_line_webhooks",
    "LINE webhook events by channel and type (message, follow, unfollow, bad_signature, …)",
    ("sender", "status"),
)


class LineWebhookRoutes(WebhookReceiver[LineChannelConfig, _LineNotification]):
    """Handlers of ``/webhooks/line/{sender}`` for the channels of the LINE config."""

    provider = "LINE"
    sender_kind = "LINE channel"
    notification_kind = "LINE webhook"
    signature_header = SIGNATURE_HEADER
    events = EVENTS

    def __init__(
        self, config: LineConfig, accounts: list[AccountConfig], store: Store, metrics: Metrics | None = None
    ) -> None:
        super().__init__({c.sender: c for c in config.channels}, store, metrics, accounts)

    def signature_ok(self, sender: LineChannelConfig, body: bytes, header: str | None) -> bool:
        return signature_ok(sender.channel_secret, body, header)

    def decode(self, body: bytes) -> _LineNotification:
        return _decoder.decode(body)

    async def handle(self, sender: LineChannelConfig, notification: _LineNotification) -> web.StreamResponse:
        """Inbound messages stored for the account, and blocks remembered, before the 200."""
        channel = sender
        now = time.time()
        inbound: list[InboundItem] = []
        blocked: dict[str, float] = {}  # user -> until, the last follow or unfollow of the batch winning
        for event in notification.events:
            self.count(channel.sender, event.type or "unknown")
            user = event.source.userId if event.source else None
            if event.type == "unfollow" and user:
                log.info("LINE user %s blocked %s: later steps to them fail over", user, channel.sender)
                blocked[user] = now + BLOCKED_FOR_S
            elif event.type == "follow" and user:
                blocked[user] = 0.0
            elif event.type == "message" and event.message is not None:
                item = await self._inbound_item(event, channel, now)
                if item is not None:
                    inbound.append(item)
        if blocked:
            key = blocked_key(channel.sender)
            await self.store.set_capabilities([(BLOCKED_ACCOUNT, key, u, until) for u, until in blocked.items()])
        if inbound:
            await self.store.push_webhooks(inbound, now)
        return web.json_response({"inbound": len(inbound), "blocked": sum(1 for v in blocked.values() if v)})

    async def _inbound_item(self, event: _LineEvent, channel: LineChannelConfig, now: float) -> InboundItem | None:
        target = await self.inbound_account(channel.sender, channel.account)
        if target is None:
            return None
        account_id, inbound_url = target
        message_id = str((event.message or {}).get("id", "") or event.webhookEventId or "")
        body = _encoder.encode(inbound_report(event, channel, now))
        return (account_id, f"inbound.line.{message_id}", inbound_url, "application/json", body)
