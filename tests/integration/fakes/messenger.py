"""A fake Messenger Platform (Graph API Send API) on loopback, and the webhooks Meta posts for a page.

Meta publishes no OpenAPI document of the Messenger Platform (the ``facebook/openapi`` repository covers
WhatsApp only), so this fake enforces what developers.facebook.com/docs/messenger-platform/reference/send-api
documents, answering Graph errors as the Send API does:

- ``POST /{version}/{page-id}/messages`` with ``Authorization: Bearer <page access token>`` of that page
  (else code 190, ``OAuthException``) and a JSON body;
- ``recipient.id`` (the PSID) a string; ``messaging_type`` one of ``RESPONSE``, ``UPDATE``, ``MESSAGE_TAG``,
  with ``tag`` exactly when ``MESSAGE_TAG``; ``message`` with exactly one of ``text`` (at most 2,000
  characters) and ``attachment`` (``type`` image / audio / video / file, ``payload.url`` an http(s) URL);
  nothing else at the top level (code 100);
- a PSID the page does not know: code 100, subcode 2018001 "No matching user found"; a user who blocked the
  page: code 551, subcode 1545041 "This person isn't available right now".

A valid send answers ``{"recipient_id", "message_id"}`` with a mid of its own. Webhooks are built as Meta posts
them (``object: page``, ``entry[].messaging[]``) and signed ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of
the body with the app secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.integration.fakes.server import ThreadServer

PAGE_ID = "1067280970047460"
PAGE_TOKEN = "EAAGm0PX4ZCpsBAMessengerPageToken"
APP_SECRET = "messenger-app-secret"


@dataclass
class Send:
    """One request to the Send API and the answer it got."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    answer: dict[str, Any]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def mid(self) -> str | None:
        mid = self.answer.get("message_id")
        return mid if isinstance(mid, str) else None


def graph_error(code: int, message: str, subcode: int | None = None, status: int = 400) -> tuple[int, dict[str, Any]]:
    """A Graph API error answer as the Send API gives it."""
    error: dict[str, Any] = {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code,
                             "fbtrace_id": "AbCdEfGhIjK"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return status, {"error": error}


_URL = re.compile(r"^https?://\S+$")


def _shape_errors(body: Any) -> list[str]:
    """What the Send API reference says is wrong with a request body."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    errors = [f"unknown parameter {k}" for k in body if k not in ("recipient", "messaging_type", "tag", "message")]
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not isinstance(recipient.get("id"), str) or not recipient["id"]:
        errors.append("recipient.id (the PSID) is required")
    kind = body.get("messaging_type")
    if kind not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
        errors.append("messaging_type must be RESPONSE, UPDATE or MESSAGE_TAG")
    if (kind == "MESSAGE_TAG") != isinstance(body.get("tag"), str):
        errors.append("tag is required with MESSAGE_TAG and only then")
    message = body.get("message")
    if not isinstance(message, dict):
        return [*errors, "message is required"]
    if ("text" in message) == ("attachment" in message):
        errors.append("message must have exactly one of text and attachment")
    if "text" in message and (not isinstance(message["text"], str) or not 0 < len(message["text"]) <= 2000):
        errors.append("message.text must be 1 to 2000 characters")
    if "attachment" in message:
        attachment = message["attachment"]
        if not isinstance(attachment, dict) or attachment.get("type") not in ("image", "audio", "video", "file"):
            errors.append("message.attachment.type must be image, audio, video or file")
        else:
            payload = attachment.get("payload")
            if not isinstance(payload, dict) or not _URL.match(str(payload.get("url", ""))):
                errors.append("message.attachment.payload.url must be an http(s) URL")
    return errors


class FakeMessenger(ThreadServer):
    """The Send API of one page, with the users it knows and the errors a test queues."""

    _mids = itertools.count(1)

    def __init__(self, page_id: str = PAGE_ID, token: str = PAGE_TOKEN, app_secret: str = APP_SECRET) -> None:
        super().__init__()
        self.page_id = page_id
        self.token = token
        self.app_secret = app_secret
        self.users: set[str] = set()
        """PSIDs of people who talked to the page."""
        self.blocked: set[str] = set()
        """PSIDs of people who blocked the page."""
        self.sends: list[Send] = []
        self.errors: list[tuple[int, dict[str, Any]]] = []

    def add_user(self, psid: str) -> str:
        with self.lock:
            self.users.add(psid)
        return psid

    def fail_next(self, status: int, answer: dict[str, Any]) -> None:
        """Answer the next valid send with this error (it is not sent)."""
        with self.lock:
            self.errors.append((status, answer))

    def sent_to(self, psid: str) -> list[Send]:
        with self.lock:
            return [s for s in self.sends if s.body and _recipient(s.body) == psid]

    def wait_sends(self, psid: str, n: int = 1, timeout: float = 10.0) -> list[Send]:
        deadline = time.monotonic() + timeout
        while len(found := self.sent_to(psid)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {n} sends to {psid} within {timeout}s")
            time.sleep(0.02)
        return found

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        status, answer = self._answer(request, body)
        with self.lock:
            self.sends.append(Send(request.path, dict(request.headers), body, status, answer))
        return web.json_response(answer, status=status)

    def _answer(self, request: web.Request, body: bytes) -> tuple[int, dict[str, Any]]:
        match = re.fullmatch(r"/v\d+\.\d+/([^/]+)/messages", request.path)
        if request.method != "POST" or match is None:
            return graph_error(100, f"Unsupported {request.method} request {request.path}")
        if request.headers.get("Authorization") != f"Bearer {self.token}" or match.group(1) != self.page_id:
            return graph_error(190, "Invalid OAuth access token - Cannot parse access token")
        if request.content_type != "application/json":
            return graph_error(100, "The body must be JSON (Content-Type: application/json)")
        try:
            data = json.loads(body)
        except ValueError:
            return graph_error(100, "The body is not valid JSON")
        errors = _shape_errors(data)
        if errors:
            return graph_error(100, "Invalid parameter: " + "; ".join(errors))
        psid = data["recipient"]["id"]
        with self.lock:
            if self.errors:
                return self.errors.pop(0)
            if psid in self.blocked:
                return graph_error(551, "This person isn't available right now.", 1545041)
            if psid not in self.users:
                return graph_error(100, "No matching user found", 2018001)
        return 200, {"recipient_id": psid, "message_id": f"m_fake{next(self._mids):010d}"}

    # --- webhooks as Meta posts them ---------------------------------------------------------------------

    def sign(self, body: bytes) -> str:
        """``X-Hub-Signature-256`` of ``body`` with the app secret."""
        return "sha256=" + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()

    def notification(self, *events: dict[str, Any]) -> bytes:
        """A ``page`` notification carrying ``events`` (each a ``messaging`` item)."""
        now = int(time.time() * 1000)
        return json.dumps({"object": "page", "entry": [{"id": self.page_id, "time": now, "messaging": list(events)}]},
                          separators=(",", ":")).encode()

    def delivery(self, psid: str, mids: list[str] | None, watermark_ms: int) -> dict[str, Any]:
        """A ``message_deliveries`` event (``mids`` None: watermark only, as Meta may send)."""
        delivery: dict[str, Any] = {"watermark": watermark_ms}
        if mids is not None:
            delivery["mids"] = mids
        return {"sender": {"id": psid}, "recipient": {"id": self.page_id}, "delivery": delivery}

    def read(self, psid: str, watermark_ms: int) -> dict[str, Any]:
        """A ``message_reads`` event: everything sent to ``psid`` before the watermark was read."""
        return {"sender": {"id": psid}, "recipient": {"id": self.page_id}, "timestamp": watermark_ms + 5,
                "read": {"watermark": watermark_ms}}

    def user_message(self, psid: str, mid: str, text: str) -> dict[str, Any]:
        """A ``messages`` event: the user wrote to the page."""
        return {"sender": {"id": psid}, "recipient": {"id": self.page_id}, "timestamp": int(time.time() * 1000),
                "message": {"mid": mid, "text": text}}


def _recipient(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    recipient = data.get("recipient") if isinstance(data, dict) else None
    psid = recipient.get("id") if isinstance(recipient, dict) else None
    return psid if isinstance(psid, str) else None
