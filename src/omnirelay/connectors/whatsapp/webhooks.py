"""The WhatsApp Cloud API webhook: ``/webhooks/whatsapp/{sender}``, the URL to register at Meta for a sender.

``GET`` answers Meta's verification handshake. ``POST`` takes event notifications signed with the app secret
(``X-Hub-Signature-256``, checked over the raw body in constant time): message statuses become receipts for
the engine (``delivered`` → DELIVERED, ``read`` → SEEN, ``failed`` → the outcome of its error code), and
messages users send become Infobip's inbound-message webhook, pushed to the ``inbound_url`` of the account
that owns the sender. The answer is 200 once all of it is stored; anything else makes Meta send it again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from prometheus_client import Counter

from omnirelay.api.errors import envelope
from omnirelay.config import AccountConfig, WhatsAppConfig, WhatsAppSenderConfig
from omnirelay.connectors.base import Receipt
from omnirelay.connectors.whatsapp.connector import WEBHOOK_RETRY_S, classify, describe_error
from omnirelay.domain.dates import format_ts
from omnirelay.store.base import Store

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.whatsapp")

SIGNATURE_HEADER = "X-Hub-Signature-256"
CHANNEL = "WHATSAPP"


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of the raw ``body`` with ``app_secret`` (compared in constant time)."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().lower().encode(), sign(app_secret, body).encode())


# --- Meta's notification ---------------------------------------------------------------------------------


class _ErrorData(msgspec.Struct):
    details: str | None = None


class _StatusError(msgspec.Struct):
    code: int | None = None
    title: str | None = None
    message: str | None = None
    error_data: _ErrorData | None = None


class _Status(msgspec.Struct):
    id: str
    status: str
    timestamp: str | None = None
    recipient_id: str | None = None
    errors: list[_StatusError] = msgspec.field(default_factory=list)


class _Profile(msgspec.Struct):
    name: str | None = None


class _Contact(msgspec.Struct):
    profile: _Profile | None = None
    wa_id: str | None = None


class _Metadata(msgspec.Struct):
    display_phone_number: str | None = None
    phone_number_id: str | None = None


class _Value(msgspec.Struct):
    metadata: _Metadata | None = None
    contacts: list[_Contact] = msgspec.field(default_factory=list)
    messages: list[dict[str, Any]] = msgspec.field(default_factory=list)
    statuses: list[_Status] = msgspec.field(default_factory=list)


class _Change(msgspec.Struct):
    field: str | None = None
    value: msgspec.Raw = msgspec.Raw(b"{}")


class _Entry(msgspec.Struct):
    id: str | None = None
    changes: list[_Change] = msgspec.field(default_factory=list)


class _Notification(msgspec.Struct):
    object: str | None = None
    entry: list[_Entry] = msgspec.field(default_factory=list)


_notification_decoder = msgspec.json.Decoder(_Notification)
_value_decoder = msgspec.json.Decoder(_Value)
_encoder = msgspec.json.Encoder()


def message_values(body: bytes) -> list[_Value]:
    """The ``value`` of every ``messages`` change of a notification; msgspec errors for a malformed one."""
    notification = _notification_decoder.decode(body)
    return [
        _value_decoder.decode(change.value)
        for entry in notification.entry
        for change in entry.changes
        if change.field == "messages"
    ]


def status_receipt(status: _Status) -> Receipt | None:
    """The receipt for one message status; None for ``sent`` and statuses that change nothing."""
    if status.status == "delivered":
        return Receipt(CHANNEL, status.id, "DELIVERED")
    if status.status == "read":
        return Receipt(CHANNEL, status.id, "SEEN")
    if status.status != "failed":
        return None
    error = status.errors[0] if status.errors else _StatusError()
    verdict = classify(error.code)
    details = error.error_data.details if error.error_data else None
    return Receipt(
        CHANNEL,
        status.id,
        verdict.outcome,
        error=verdict.error,
        not_a_user=verdict.not_a_user,
        detail=describe_error(error.code, error.title, error.message, details),
        after_s=WEBHOOK_RETRY_S if verdict.outcome == "RETRY" else 0.0,
    )


# --- inbound messages in Infobip's form ----------------------------------------------------------------

_CONTACT_NAME = {
    "first_name": "firstName",
    "last_name": "lastName",
    "middle_name": "middleName",
    "formatted_name": "formattedName",
    "prefix": "namePrefix",
    "suffix": "nameSuffix",
}
_CONTACT_FIELDS = {"country_code": "countryCode", "wa_id": "waId"}


def _camel_contact(card: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in card.items():
        if key == "name" and isinstance(value, dict):
            out["name"] = {_CONTACT_NAME.get(k, k): v for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = [
                {_CONTACT_FIELDS.get(k, k): v for k, v in item.items()} if isinstance(item, dict) else item
                for item in value
            ]
        else:
            out[key] = value
    return out


_MEDIA_TYPES = {"image": "IMAGE", "video": "VIDEO", "document": "DOCUMENT", "audio": "AUDIO", "sticker": "STICKER"}


def inbound_content(message: dict[str, Any], media_base: str) -> dict[str, Any]:
    """The ``message`` object of Infobip's inbound webhook for one Cloud API message.

    Media is given as the Graph API URL of its id under ``media_base`` (``{base_url}/{api_version}``), which
    answers the download link to a request with the sender's access token.
    """
    kind = message.get("type")
    part = message.get(kind) if isinstance(kind, str) else None
    data: dict[str, Any] = part if isinstance(part, dict) else {}
    if kind == "text":
        return {"type": "TEXT", "text": data.get("body", "")}
    if kind in _MEDIA_TYPES:
        kind_name = "VOICE" if kind == "audio" and data.get("voice") else _MEDIA_TYPES[kind]
        content: dict[str, Any] = {"type": kind_name}
        if data.get("id"):
            content["url"] = f"{media_base}/{data['id']}"
        if data.get("caption"):
            content["caption"] = data["caption"]
        return content
    if kind == "location":
        keys = ("longitude", "latitude", "name", "address", "url")
        return {"type": "LOCATION", **{k: data[k] for k in keys if data.get(k) is not None}}
    if kind == "contacts":
        cards = message.get("contacts") or []
        return {"type": "CONTACT", "contacts": [_camel_contact(c) for c in cards if isinstance(c, dict)]}
    if kind == "button":
        return {"type": "BUTTON", "text": data.get("text", ""), "payload": data.get("payload", "")}
    if kind == "interactive":
        reply_kind = data.get("type")
        reply = data.get(reply_kind) if isinstance(reply_kind, str) else None
        if isinstance(reply, dict) and reply_kind == "button_reply":
            return {"type": "INTERACTIVE_BUTTON_REPLY", "id": reply.get("id", ""), "title": reply.get("title", "")}
        if isinstance(reply, dict) and reply_kind == "list_reply":
            content = {"type": "INTERACTIVE_LIST_REPLY", "id": reply.get("id", ""), "title": reply.get("title", "")}
            if reply.get("description"):
                content["description"] = reply["description"]
            return content
    if kind == "order":
        items = [
            {
                "productRetailerId": item.get("product_retailer_id"),
                "quantity": item.get("quantity"),
                "itemPrice": item.get("item_price"),
                "currency": item.get("currency"),
            }
            for item in data.get("product_items") or []
            if isinstance(item, dict)
        ]
        content = {"type": "ORDER", "catalogId": data.get("catalog_id"), "productItems": items}
        if data.get("text"):
            content["text"] = data["text"]
        return content
    return {"type": "UNSUPPORTED"}


def inbound_report(message: dict[str, Any], value: _Value, sender: WhatsAppSenderConfig, now: float) -> dict[str, Any]:
    """Infobip's inbound-message webhook body (``{"results":[…],"messageCount":1,…}``) for one message."""
    user = str(message.get("from", ""))
    try:
        received_at = float(message.get("timestamp") or now)
    except (TypeError, ValueError):
        received_at = now
    result: dict[str, Any] = {
        "from": user,
        "to": sender.sender,
        "integrationType": CHANNEL,
        "receivedAt": format_ts(received_at),
        "messageId": str(message.get("id", "")),
        "pairedMessageId": None,
        "callbackData": None,
        "message": inbound_content(message, f"{sender.base_url.rstrip('/')}/{sender.api_version}"),
    }
    names = [c.profile.name for c in value.contacts if c.profile and c.profile.name and c.wa_id in (user, None)]
    if names:
        result["contact"] = {"name": names[0]}
    return {"results": [result], "messageCount": 1, "pendingMessageCount": 0}


# --- routes --------------------------------------------------------------------------------------------

_WEBHOOK_COUNTERS: weakref.WeakKeyDictionary[Metrics, Counter] = weakref.WeakKeyDictionary()


def _webhook_counter(metrics: Metrics) -> Counter:
    counter = _WEBHOOK_COUNTERS.get(metrics)
    if counter is None:
        counter = _WEBHOOK_COUNTERS[metrics] = Counter(
            "omnirelay_whatsapp_webhooks",
            "WhatsApp webhook events by sender and status (delivered, read, failed, inbound, bad_signature, …)",
            ["sender", "status"],
            registry=metrics.registry,
        )
    return counter


class WhatsAppWebhookRoutes:
    """Handlers of ``/webhooks/whatsapp/{sender}`` for the senders of the WhatsApp config."""

    def __init__(
        self,
        config: WhatsAppConfig,
        accounts: list[AccountConfig],
        store: Store,
        metrics: Metrics | None = None,
    ) -> None:
        self.senders = {s.sender: s for s in config.senders}
        self.by_phone_number_id = {s.phone_number_id: s for s in config.senders}
        self.accounts = {a.username: a for a in accounts}
        self.store = store
        self.metrics = metrics
        self._counter = _webhook_counter(metrics) if metrics is not None else None
        self._account_ids: dict[str, int] = {}

    def add_to(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_get("/webhooks/whatsapp/{sender}", self.verify)
        app.router.add_post("/webhooks/whatsapp/{sender}", self.receive)

    def _count(self, sender: str, status: str, n: int = 1) -> None:
        if self._counter is not None and self.metrics is not None and n:
            self.metrics.of(self._counter, sender, status).inc(n)

    async def verify(self, request: web.Request) -> web.StreamResponse:
        """Meta's subscription handshake: echo ``hub.challenge`` when ``hub.verify_token`` is the sender's."""
        sender = self.senders.get(request.match_info["sender"])
        if sender is None:
            return envelope(404, "Unknown WhatsApp sender")
        mode = request.query.get("hub.mode", "")
        token = request.query.get("hub.verify_token", "")
        if mode != "subscribe" or not hmac.compare_digest(token.encode(), sender.verify_token.encode()):
            self._count(sender.sender, "bad_verify_token")
            return envelope(403, "Verification token mismatch")
        return web.Response(text=request.query.get("hub.challenge", ""), content_type="text/plain")

    async def receive(self, request: web.Request) -> web.StreamResponse:
        """A signed notification: receipts for the engine and inbound messages for the account, stored
        before the 200 (Meta sends a notification again until it gets one)."""
        sender = self.senders.get(request.match_info["sender"])
        if sender is None:
            return envelope(404, "Unknown WhatsApp sender")
        body = await request.read()
        if not signature_ok(sender.app_secret, body, request.headers.get(SIGNATURE_HEADER)):
            self._count(sender.sender, "bad_signature")
            return envelope(401, f"Missing or invalid {SIGNATURE_HEADER}")
        try:
            values = message_values(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._count(sender.sender, "bad_json")
            return envelope(400, f"Malformed WhatsApp notification: {exc}")
        now = time.time()
        receipts: list[Receipt] = []
        inbound: list[tuple[int, str, str, str, bytes]] = []
        for value in values:
            phone_number_id = value.metadata.phone_number_id if value.metadata else None
            # one app's webhook carries every number of the app: the notification names its own number
            owner = self.by_phone_number_id.get(phone_number_id or "", sender)
            for status in value.statuses:
                self._count(owner.sender, status.status)
                receipt = status_receipt(status)
                if receipt is not None:
                    receipts.append(receipt)
            for message in value.messages:
                self._count(owner.sender, "inbound")
                item = await self._inbound_item(message, value, owner, now)
                if item is not None:
                    inbound.append(item)
        if receipts:
            await self.store.record_receipts(receipts, now)
        if inbound:
            await self.store.push_webhooks(inbound, now)
        return web.json_response({"receipts": len(receipts), "inbound": len(inbound)})

    async def _inbound_item(
        self, message: dict[str, Any], value: _Value, sender: WhatsAppSenderConfig, now: float
    ) -> tuple[int, str, str, str, bytes] | None:
        account = self.accounts.get(sender.account or "")
        if account is None or not account.inbound_url:
            log.info("inbound WhatsApp message to %s dropped: no account with an inbound_url", sender.sender)
            return None
        account_id = await self._account_id(account.username)
        if account_id is None:
            return None
        body = _encoder.encode(inbound_report(message, value, sender, now))
        return (account_id, f"inbound.{message.get('id', '')}", account.inbound_url, "application/json", body)

    async def _account_id(self, username: str) -> int | None:
        account_id = self._account_ids.get(username)
        if account_id is None:
            found = await self.store.account_by_username(username)
            if found is None:
                log.warning("WhatsApp sender's account %r does not exist", username)
                return None
            account_id = self._account_ids[username] = found.id
        return account_id
