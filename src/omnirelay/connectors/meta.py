"""What Meta's two platforms (the WhatsApp Cloud API and Messenger) share: the Graph API's error object, the
``X-Hub-Signature-256`` signature of webhook notifications and the webhook verification handshake."""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol, TypeVar

import msgspec
from aiohttp import web

from omnirelay.api.errors import envelope
from omnirelay.connectors.webhooks import N, WebhookReceiver

SIGNATURE_HEADER = "X-Hub-Signature-256"


class GraphErrorData(msgspec.Struct):
    """``error_data`` of a Graph error."""

    details: str | None = None


class GraphError(msgspec.Struct):
    """The Graph API's error object: the ``error`` of an error answer, and (with ``title``) each of the
    ``errors`` of a WhatsApp ``failed`` status."""

    code: int | None = None
    title: str | None = None
    message: str | None = None
    type: str | None = None
    error_subcode: int | None = None
    error_user_title: str | None = None
    error_data: GraphErrorData | None = None
    fbtrace_id: str | None = None

    @property
    def details(self) -> str | None:
        """``error_data.details``, when there is one."""
        return self.error_data.details if self.error_data else None


class GraphErrorBody(msgspec.Struct):
    """An error answer of the Graph API."""

    error: GraphError


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of the raw ``body`` with ``app_secret`` (compared in constant time)."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().lower().encode(), sign(app_secret, body).encode())


def verify_handshake(request: web.Request, verify_token: str) -> web.Response | None:
    """Meta's subscription handshake: the answer echoing ``hub.challenge`` when ``hub.verify_token`` is
    ``verify_token``, else None (the caller refuses it)."""
    mode = request.query.get("hub.mode", "")
    token = request.query.get("hub.verify_token", "")
    if mode != "subscribe" or not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    return web.Response(text=request.query.get("hub.challenge", ""), content_type="text/plain")


class MetaSender(Protocol):
    """A configured sender of Meta's platforms: the app's secret and the webhook's verify token."""

    @property
    def sender(self) -> str: ...

    @property
    def account(self) -> str | None: ...

    @property
    def app_secret(self) -> str: ...

    @property
    def verify_token(self) -> str: ...


M = TypeVar("M", bound=MetaSender)


class MetaWebhookReceiver(WebhookReceiver[M, N]):
    """A receiver of Meta's webhooks: ``GET`` answers the verification handshake, ``POST`` is signed with the
    app secret (:data:`SIGNATURE_HEADER`)."""

    signature_header = SIGNATURE_HEADER

    def add_to(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_get(self.path, self.verify)
        super().add_to(app)

    def signature_ok(self, sender: M, body: bytes, header: str | None) -> bool:
        return signature_ok(sender.app_secret, body, header)

    async def verify(self, request: web.Request) -> web.StreamResponse:
        """Meta's subscription handshake: echo ``hub.challenge`` when ``hub.verify_token`` is the sender's."""
        sender = self.sender_of(request)
        if sender is None:
            return envelope(404, f"Unknown {self.sender_kind}")
        answer = verify_handshake(request, sender.verify_token)
        if answer is None:
            self.count(sender.sender, "bad_verify_token")
            return envelope(403, "Verification token mismatch")
        return answer
