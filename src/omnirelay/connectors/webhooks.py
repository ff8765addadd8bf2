"""What every provider's webhook receiver does the same way (WhatsApp, Viber, Messenger, LINE).

A receiver subclasses :class:`WebhookReceiver` and keeps what is its own: how its provider signs a request,
how a notification decodes, and what its events become (:meth:`~WebhookReceiver.handle`). The skeleton holds
the route ``POST /webhooks/<provider>/{sender}``, the order of checks (unknown sender → 404, bad signature →
401 before anything is read, malformed body → 400, each counted), the event counter, and the look-up of the
account that takes a sender's inbound messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import msgspec
from aiohttp import web

from omnirelay.api.errors import envelope
from omnirelay.connectors.counters import CounterSpec
from omnirelay.domain.dates import format_ts

if TYPE_CHECKING:
    from omnirelay.config import AccountConfig
    from omnirelay.metrics import Metrics
    from omnirelay.store.base import Store

InboundItem = tuple[int, str, str, str, bytes]
"""An outbox row for :meth:`Store.push_webhooks`: account id, idempotency key, URL, content type, body."""


def inbound_result(
    user: str | None, to: str, channel: str, received_at: float, message_id: str, content: dict[str, Any]
) -> dict[str, Any]:
    """One entry of ``results`` of Infobip's inbound-message webhook: a message ``user`` sent to the sender
    ``to`` on ``channel``."""
    return {
        "from": user,
        "to": to,
        "integrationType": channel,
        "receivedAt": format_ts(received_at),
        "messageId": message_id,
        "pairedMessageId": None,
        "callbackData": None,
        "message": content,
    }


def inbound_webhook(result: dict[str, Any]) -> dict[str, Any]:
    """Infobip's inbound-message webhook body for one message."""
    return {"results": [result], "messageCount": 1, "pendingMessageCount": 0}


class WebhookSender(Protocol):
    """A configured sender whose provider calls back: what the route's ``{sender}`` names."""

    @property
    def sender(self) -> str: ...


S = TypeVar("S", bound=WebhookSender)
N = TypeVar("N")


class WebhookReceiver(Generic[S, N]):
    """The handler of ``POST /webhooks/<provider>/{sender}`` for the configured senders of one connector."""

    provider: ClassVar[str]
    """The provider's name in texts and in the route (lower case)."""
    sender_kind: ClassVar[str]
    """What a sender is called: ``"Viber bot"`` gives ``Unknown Viber bot``."""
    notification_kind: ClassVar[str]
    """What a request is called: ``"Viber callback"`` gives ``Malformed Viber callback: …``."""
    signature_header: ClassVar[str]
    events: ClassVar[CounterSpec]
    """The counter of events by sender and kind (``bad_signature`` and ``bad_json`` too)."""

    def __init__(
        self,
        senders: Mapping[str, S],
        store: Store,
        metrics: Metrics | None = None,
        accounts: Sequence[AccountConfig] = (),
    ) -> None:
        self.senders: dict[str, S] = dict(senders)
        self.log = logging.getLogger(f"omnirelay.{self.provider.lower()}")
        self.store = store
        self.metrics = metrics
        self.accounts = {a.username: a for a in accounts}
        self._counter = self.events.of(metrics) if metrics is not None else None
        self._account_ids: dict[str, int] = {}

    @property
    def path(self) -> str:
        """The route of the receiver."""
        return f"/webhooks/{self.provider.lower()}/{{sender}}"

    def add_to(self, app: web.Application) -> None:
        """Register the route."""
        app.router.add_post(self.path, self.receive)

    def signature_ok(self, sender: S, body: bytes, header: str | None) -> bool:
        """Whether ``header`` signs the raw ``body`` for ``sender``."""
        raise NotImplementedError

    def decode(self, body: bytes) -> N:
        """The notification in ``body``; msgspec's errors for a malformed one."""
        raise NotImplementedError

    async def handle(self, sender: S, notification: N) -> web.StreamResponse:
        """What the notification's events become, stored before the answer."""
        raise NotImplementedError

    def count(self, sender: str, status: str, n: int = 1) -> None:
        """Count ``n`` events of kind ``status`` for ``sender``."""
        if self._counter is not None and self.metrics is not None and n:
            self.metrics.of(self._counter, sender, status).inc(n)

    def sender_of(self, request: web.Request) -> S | None:
        """The configured sender the request's path names."""
        return self.senders.get(request.match_info["sender"])

    async def receive(self, request: web.Request) -> web.StreamResponse:
        """A signed notification: checked, decoded and handed to :meth:`handle`."""
        sender = self.sender_of(request)
        if sender is None:
            return envelope(404, f"Unknown {self.sender_kind}")
        body = await request.read()
        if not self.signature_ok(sender, body, request.headers.get(self.signature_header)):
            self.count(sender.sender, "bad_signature")
            return envelope(401, f"Missing or invalid {self.signature_header}")
        try:
            notification = self.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.count(sender.sender, "bad_json")
            return envelope(400, f"Malformed {self.notification_kind}: {exc}")
        return await self.handle(sender, notification)

    async def inbound_account(self, sender: str, username: str | None) -> tuple[int, str] | None:
        """The id and ``inbound_url`` of the account ``username`` that takes ``sender``'s inbound messages, or
        None (logged) when there is none."""
        account = self.accounts.get(username or "")
        if account is None or not account.inbound_url:
            self.log.info("inbound %s message to %s dropped: no account with an inbound_url", self.provider, sender)
            return None
        account_id = self._account_ids.get(account.username)
        if account_id is None:
            found = await self.store.account_by_username(account.username)
            if found is None:
                self.log.warning("%s's account %r does not exist", self.sender_kind, account.username)
                return None
            account_id = self._account_ids[account.username] = found.id
        return account_id, account.inbound_url
