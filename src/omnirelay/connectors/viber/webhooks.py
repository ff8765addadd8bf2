"""The Viber bot callbacks: ``/webhooks/viber/{sender}``, the URL to give Viber's ``set_webhook`` for a bot.

Viber signs each callback with ``X-Viber-Content-Signature``: the hex HMAC-SHA256 of the raw body keyed with
the bot's auth token, checked here in constant time before anything is read. ``delivered`` → DELIVERED,
``seen`` → SEEN and ``failed`` → UNDELIVERABLE become receipts for the engine, found by the ``message_token``
that the send answered. ``subscribed``, ``unsubscribed``, ``conversation_started``, ``message`` and the
``webhook`` check that ``set_webhook`` makes are acknowledged and counted; they change no message (the bot's
users map is the operator's, see README "Viber"). The answer is 200 once the receipts are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from omnirelay.config import ViberBotConfig, ViberConfig
from omnirelay.connectors.counters import CounterSpec
from omnirelay.connectors.webhooks import WebhookReceiver
from omnirelay.domain.delivery import Receipt
from omnirelay.domain.lifecycle import Outcome
from omnirelay.store.base import Store

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.viber")

SIGNATURE_HEADER = "X-Viber-Content-Signature"
CHANNEL = "VIBER"
#: Callbacks that are acknowledged without changing a message.
ACKNOWLEDGED = frozenset({"subscribed", "unsubscribed", "conversation_started", "message", "webhook", "client_status"})


def sign(auth_token: str, body: bytes) -> str:
    """The ``X-Viber-Content-Signature`` Viber sends with ``body``: the hex HMAC-SHA256 keyed with the token."""
    return hmac.new(auth_token.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(auth_token: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of the raw ``body`` with ``auth_token`` (compared in constant time)."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().lower().encode(), sign(auth_token, body).encode())


class _User(msgspec.Struct):
    id: str | None = None


class Callback(msgspec.Struct):
    """The fields of a Viber callback that matter here."""

    event: str
    timestamp: int | None = None
    message_token: int | str | None = None
    user_id: str | None = None
    desc: str | None = None
    user: _User | None = None


_decoder = msgspec.json.Decoder(Callback)


def callback_receipt(callback: Callback) -> Receipt | None:
    """The receipt for a ``delivered``, ``seen`` or ``failed`` callback; None for the others."""
    if callback.message_token is None:
        return None
    token = str(callback.message_token)
    if callback.event == "delivered":
        return Receipt(CHANNEL, token, Outcome.DELIVERED)
    if callback.event == "seen":
        return Receipt(CHANNEL, token, Outcome.SEEN)
    if callback.event == "failed":
        detail = f"Viber failed callback: {callback.desc}" if callback.desc else "Viber failed callback"
        return Receipt(CHANNEL, token, Outcome.UNDELIVERABLE, error="EC_PROVIDER_DR_ERROR", detail=detail)
    return None


EVENTS = CounterSpec(
    "omnirelay_viber_callbacks",
    "Viber callbacks by sender and event (delivered, seen, failed, subscribed, …, bad_signature)",
    ("sender", "event"),
)


class ViberWebhookRoutes(WebhookReceiver[ViberBotConfig, Callback]):
    """The handler of ``/webhooks/viber/{sender}`` for the bots of the Viber config."""

    provider = "Viber"
    sender_kind = "Viber bot"
    notification_kind = "Viber callback"
    signature_header = SIGNATURE_HEADER
    events = EVENTS

    def __init__(self, config: ViberConfig, store: Store, metrics: Metrics | None = None) -> None:
        super().__init__({b.sender: b for b in config.bots}, store, metrics)

    def signature_ok(self, sender: ViberBotConfig, body: bytes, header: str | None) -> bool:
        return signature_ok(sender.auth_token, body, header)

    def decode(self, body: bytes) -> Callback:
        return _decoder.decode(body)

    async def handle(self, sender: ViberBotConfig, notification: Callback) -> web.StreamResponse:
        """A receipt for the engine, stored before the 200."""
        callback = notification
        known = callback.event in ACKNOWLEDGED or callback.event in ("delivered", "seen", "failed")
        self.count(sender.sender, callback.event if known else "other")
        receipt = callback_receipt(callback)
        if receipt is not None:
            await self.store.record_receipts([receipt], time.time())
        elif callback.event in ("subscribed", "unsubscribed"):
            user = callback.user.id if callback.user else callback.user_id
            log.info("Viber bot %s: user %s %s", sender.sender, user, callback.event)
        return web.Response(status=200)
