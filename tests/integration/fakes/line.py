"""A fake LINE Messaging API (push message) on loopback, and the webhooks LINE posts for a channel.

LINE's own OpenAPI document (line/line-openapi, ``messaging-api.yml``) is in no package of npm or PyPI (the
SDKs ship code generated from it, not the document), so this fake enforces what the push-message reference
documents (developers.line.biz/en/reference/messaging-api/#send-push-message):

- ``POST /v2/bot/message/push`` with ``Authorization: Bearer <channel access token>`` (else 401) and a JSON
  body ``{"to", "messages": [1 to 5 message objects]}``: ``text`` (1 to 5,000 characters), ``image`` and
  ``video`` (``originalContentUrl`` and ``previewImageUrl``, https), ``audio`` (``originalContentUrl`` and a
  positive integer ``duration``), ``sticker`` (``packageId`` and ``stickerId`` strings), ``flex``
  (``altText`` and ``contents`` of type ``bubble`` or ``carousel``); any other is 400 "The request body has
  N error(s)" with ``details``;
- ``X-Line-Retry-Key``, when given, a hexadecimal UUID (else 400); a key already accepted is answered 409 with
  the ``X-Line-Accepted-Request-Id`` of the push it accepted and that push's ``sentMessages``, and nothing is
  sent again (``received`` holds what users got: a test can see that nothing arrived twice);
- a user id LINE does not know: 400 "Failed to send messages"; a user who blocked the account: 200, but the
  message is not shown (LINE's FAQ), so it is not in ``received``.

Webhooks are built as LINE posts them (``{"destination", "events": [...]}``) and signed
``X-Line-Signature: base64(HMAC-SHA256(channel secret, body))``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.integration.fakes.server import ThreadServer

CHANNEL_TOKEN = "lineChannelAccessToken+abc/def="
CHANNEL_SECRET = "line-channel-secret"
BOT_USER_ID = "U0123456789abcdef0123456789abcdef"

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HTTPS = re.compile(r"^https://\S+$")


@dataclass
class Push:
    """One push request and the answer it got."""

    headers: dict[str, str]
    body: bytes
    status: int
    answer: dict[str, Any]
    answer_headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def retry_key(self) -> str | None:
        return self.headers.get("X-Line-Retry-Key")


def _message_errors(index: int, message: Any) -> list[dict[str, str]]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        return [{"message": "must be an object", "property": where}]
    kind = message.get("type")
    errors: list[dict[str, str]] = []

    def need(key: str, ok: bool, text: str) -> None:
        if not ok:
            errors.append({"message": text, "property": f"{where}.{key}"})

    if kind == "text":
        text = message.get("text")
        need("text", isinstance(text, str) and 0 < len(text) <= 5000, "Length must be between 1 and 5000")
    elif kind in ("image", "video"):
        need("originalContentUrl", bool(_HTTPS.match(str(message.get("originalContentUrl", "")))), "Invalid URL")
        need("previewImageUrl", bool(_HTTPS.match(str(message.get("previewImageUrl", "")))), "Invalid URL")
    elif kind == "audio":
        need("originalContentUrl", bool(_HTTPS.match(str(message.get("originalContentUrl", "")))), "Invalid URL")
        duration = message.get("duration")
        need("duration", isinstance(duration, int) and not isinstance(duration, bool) and duration > 0,
             "Must be a positive number")
    elif kind == "sticker":
        need("packageId", isinstance(message.get("packageId"), str), "Must be a string")
        need("stickerId", isinstance(message.get("stickerId"), str), "Must be a string")
    elif kind == "flex":
        alt = message.get("altText")
        need("altText", isinstance(alt, str) and 0 < len(alt) <= 1500, "Length must be between 1 and 1500")
        contents = message.get("contents")
        need("contents", isinstance(contents, dict) and contents.get("type") in ("bubble", "carousel"),
             "Must be a bubble or carousel container")
    else:
        errors.append({"message": "Invalid message type", "property": f"{where}.type"})
    return errors


class FakeLine(ThreadServer):
    """The push-message API of one channel, with its friends, blocked users and queued answers."""

    _ids = itertools.count(1)

    def __init__(self, token: str = CHANNEL_TOKEN, secret: str = CHANNEL_SECRET) -> None:
        super().__init__()
        self.token = token
        self.secret = secret
        self.friends: set[str] = set()
        self.blocked: set[str] = set()
        self.pushes: list[Push] = []
        self.received: list[tuple[str, dict[str, Any]]] = []
        """(user, message object) for every message a user was shown."""
        self.accepted: dict[str, tuple[str, list[dict[str, str]]]] = {}
        """Retry key -> the request id and sentMessages of the push accepted with it."""
        self.errors: list[tuple[int, dict[str, Any]]] = []
        self.lose_answers = 0
        """Accept (and show) this many more valid pushes but drop the connection instead of answering."""

    def add_friend(self, user: str) -> str:
        with self.lock:
            self.friends.add(user)
        return user

    def fail_next(self, status: int, answer: dict[str, Any]) -> None:
        """Answer the next valid push with this error (nothing is sent, the retry key is not used up)."""
        with self.lock:
            self.errors.append((status, answer))

    def lose_next_answer(self) -> None:
        with self.lock:
            self.lose_answers += 1

    def pushes_to(self, user: str) -> list[Push]:
        with self.lock:
            return [p for p in self.pushes if _to(p.body) == user]

    def received_by(self, user: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for u, m in self.received if u == user]

    def wait_pushes(self, user: str, n: int = 1, timeout: float = 10.0) -> list[Push]:
        deadline = time.monotonic() + timeout
        while len(found := self.pushes_to(user)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {n} pushes to {user} within {timeout}s")
            time.sleep(0.02)
        return found

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        status, answer, headers, lose = self._answer(request, body)
        with self.lock:
            self.pushes.append(Push(dict(request.headers), body, status, answer, headers))
        if lose and request.transport is not None:
            request.transport.close()  # accepted, but the answer never arrives
            return web.Response(status=200)
        return web.json_response(answer, status=status, headers=headers)

    def _answer(self, request: web.Request, body: bytes) -> tuple[int, dict[str, Any], dict[str, str], bool]:
        request_id = str(uuid.uuid4())
        headers = {"X-Line-Request-Id": request_id}
        if request.method != "POST" or request.path != "/v2/bot/message/push":
            return 404, {"message": "Not found"}, headers, False
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "Authentication failed. Confirm that the access token in the authorization"
                                    " header is valid."}, headers, False
        if request.content_type != "application/json":
            return 415, {"message": f"The content type, '{request.content_type}', is not supported"}, headers, False
        key = request.headers.get("X-Line-Retry-Key")
        if key is not None and not _UUID.match(key):
            return 400, {"message": "The value for the 'X-Line-Retry-Key' header is invalid"}, headers, False
        try:
            data = json.loads(body)
        except ValueError:
            return 400, {"message": "The request body could not be parsed as JSON"}, headers, False
        details: list[dict[str, str]] = []
        if not isinstance(data, dict) or not isinstance(data.get("to"), str) or not data["to"]:
            details.append({"message": "Must not be empty", "property": "to"})
        messages = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list) or not 1 <= len(messages) <= 5:
            details.append({"message": "Size must be between 1 and 5", "property": "messages"})
        else:
            for i, m in enumerate(messages):
                details += _message_errors(i, m)
        if details:
            return 400, {"message": f"The request body has {len(details)} error(s)", "details": details}, headers, False
        user = data["to"]
        with self.lock:
            if key is not None and key in self.accepted:
                accepted_id, sent = self.accepted[key]
                headers["X-Line-Accepted-Request-Id"] = accepted_id
                return 409, {"message": "The retry key is already accepted", "sentMessages": sent}, headers, False
            if self.errors:
                status, answer = self.errors.pop(0)
                return status, answer, headers, False
            if user not in self.friends and user not in self.blocked:
                return 400, {"message": "Failed to send messages"}, headers, False
            sent = [{"id": str(461230966842064897 + next(self._ids)), "quoteToken": "q" + uuid.uuid4().hex}
                    for _ in messages]
            if key is not None:
                self.accepted[key] = (request_id, sent)
            if user not in self.blocked:  # LINE accepts a push to a user who blocked it, and shows nothing
                self.received += [(user, m) for m in messages]
            lose = self.lose_answers > 0
            if lose:
                self.lose_answers -= 1
        return 200, {"sentMessages": sent}, headers, lose

    # --- webhooks as LINE posts them ----------------------------------------------------------------------

    def sign(self, body: bytes) -> str:
        """``X-Line-Signature`` of ``body`` with the channel secret."""
        return base64.b64encode(hmac.new(self.secret.encode(), body, hashlib.sha256).digest()).decode()

    def webhook(self, *events: dict[str, Any]) -> bytes:
        return json.dumps({"destination": BOT_USER_ID, "events": list(events)}).encode()

    @staticmethod
    def event(kind: str, user: str, **extra: Any) -> dict[str, Any]:
        """A webhook event of ``kind`` (``message``, ``follow``, ``unfollow``) from ``user``."""
        return {"type": kind, "mode": "active", "timestamp": int(time.time() * 1000),
                "source": {"type": "user", "userId": user}, "webhookEventId": "01H" + uuid.uuid4().hex[:23].upper(),
                "deliveryContext": {"isRedelivery": False}, **extra}

    @classmethod
    def text_message(cls, user: str, message_id: str, text: str) -> dict[str, Any]:
        return cls.event("message", user, replyToken="r" + uuid.uuid4().hex,
                         message={"id": message_id, "type": "text", "text": text, "quoteToken": "q1"})


def _to(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    to = data.get("to") if isinstance(data, dict) else None
    return to if isinstance(to, str) else None
