"""The WhatsApp Cloud API webhook: ``/webhooks/whatsapp/{sender}``, the URL to register at Meta for a sender.

``GET`` answers Meta's verification handshake. ``POST`` takes event notifications signed with the app secret
(``X-Hub-Signature-256``, checked over the raw body in constant time): message statuses become receipts for
the engine (``delivered`` → DELIVERED, ``read`` → SEEN, ``failed`` → the outcome of its error code), and
messages users send become Infobip's inbound-message webhook, pushed to the ``inbound_url`` of the account
that owns the sender. The answer is 200 once all of it is stored; anything else makes Meta send it again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from omnirelay.config import AccountConfig, WhatsAppConfig, WhatsAppSenderConfig
from omnirelay.connectors.counters import CounterSpec
from omnirelay.connectors.meta import SIGNATURE_HEADER, GraphError, MetaWebhookReceiver, sign, signature_ok
from omnirelay.connectors.webhooks import InboundItem, inbound_result, inbound_webhook
from omnirelay.connectors.whatsapp.connector import WEBHOOK_RETRY_S, classify, describe_error
from omnirelay.domain.delivery import Receipt
from omnirelay.domain.lifecycle import Outcome
from omnirelay.store.base import Store

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.whatsapp")

CHANNEL = "WHATSAPP"

__all__ = ["SIGNATURE_HEADER", "WhatsAppWebhookRoutes", "sign", "signature_ok"]


# --- Meta's notification ---------------------------------------------------------------------------------


class _Status(msgspec.Struct):
    id: str
    status: str
    timestamp: str | None = None
    recipient_id: str | None = None
    errors: list[GraphError] = msgspec.field(default_factory=list)


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


class _WhatsAppEntry(msgspec.Struct):
    id: str | None = None
    changes: list[_Change] = msgspec.field(default_factory=list)


class _WhatsAppNotification(msgspec.Struct):
    object: str | None = None
    entry: list[_WhatsAppEntry] = msgspec.field(default_factory=list)


_notification_decoder = msgspec.json.Decoder(_WhatsAppNotification)
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
        return Receipt(CHANNEL, status.id, Outcome.DELIVERED)
    if status.status == "read":
        return Receipt(CHANNEL, status.id, Outcome.SEEN)
    if status.status != "failed":
        return None
    error = status.errors[0] if status.errors else GraphError()
    verdict = classify(error.code)
    return Receipt(
        CHANNEL,
        status.id,
        verdict.outcome,
        error=verdict.error,
        not_a_user=verdict.not_a_user,
        detail=describe_error(error.code, error.title, error.message, error.details),
        after_s=WEBHOOK_RETRY_S if verdict.outcome == Outcome.RETRY else 0.0,
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
    content = inbound_content(message, f"{sender.base_url.rstrip('/')}/{sender.api_version}")
    result = inbound_result(user, sender.sender, CHANNEL, received_at, str(message.get("id", "")), content)
    names = [c.profile.name for c in value.contacts if c.profile and c.profile.name and c.wa_id in (user, None)]
    if names:
        result["contact"] = {"name": names[0]}
    return inbound_webhook(result)


# --- routes --------------------------------------------------------------------------------------------

EVENTS = CounterSpec(
    "omnirelay_whatsapp_webhooks",
    "WhatsApp webhook events by sender and status (delivered, read, failed, inbound, bad_signature, …)",
    ("sender", "status"),
)


class WhatsAppWebhookRoutes(MetaWebhookReceiver[WhatsAppSenderConfig, list[_Value]]):
    """Handlers of ``/webhooks/whatsapp/{sender}`` for the senders of the WhatsApp config."""

    provider = "WhatsApp"
    sender_kind = "WhatsApp sender"
    notification_kind = "WhatsApp notification"
    events = EVENTS

    def __init__(
        self,
        config: WhatsAppConfig,
        accounts: list[AccountConfig],
        store: Store,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__({s.sender: s for s in config.senders}, store, metrics, accounts)
        self.by_phone_number_id = {s.phone_number_id: s for s in config.senders}

    def decode(self, body: bytes) -> list[_Value]:
        return message_values(body)

    async def handle(self, sender: WhatsAppSenderConfig, notification: list[_Value]) -> web.StreamResponse:
        """Receipts for the engine and inbound messages for the account, stored before the 200 (Meta sends a
        notification again until it gets one)."""
        now = time.time()
        receipts: list[Receipt] = []
        inbound: list[InboundItem] = []
        for value in notification:
            phone_number_id = value.metadata.phone_number_id if value.metadata else None
            # one app's webhook carries every number of the app: the notification names its own number
            owner = self.by_phone_number_id.get(phone_number_id or "", sender)
            for status in value.statuses:
                self.count(owner.sender, status.status)
                receipt = status_receipt(status)
                if receipt is not None:
                    receipts.append(receipt)
            for message in value.messages:
                self.count(owner.sender, "inbound")
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
    ) -> InboundItem | None:
        target = await self.inbound_account(sender.sender, sender.account)
        if target is None:
            return None
        account_id, inbound_url = target
        body = _encoder.encode(inbound_report(message, value, sender, now))
        return (account_id, f"inbound.{message.get('id', '')}", inbound_url, "application/json", body)
