"""A fake of Viber's REST bot API (``chatapi.viber.com/pa``) on loopback, enforcing what Viber documents.

Viber publishes no OpenAPI document, so this fake checks the documented request shapes itself:

* every request carries the bot's ``X-Viber-Auth-Token`` (else status 2, ``invalidAuthToken``);
* ``send_message`` is refused with status 10 (``webhookNotSet``) until ``set_webhook`` succeeded, as Viber does;
* the body is a JSON object of documented parameters only, with ``receiver``, ``type`` and ``sender.name``
  (at most 28 characters); ``text`` (at most 7,000 characters); ``picture`` with ``media`` (a URL) and a
  ``text`` of at most 768; ``rich_media`` with ``min_api_version`` 2 or more and a ``rich_media`` object whose
  buttons fit its group (at most 6 columns and 7 rows, ``open-url`` buttons with an ``ActionBody`` URL);
  missing parameters answer status 4 (``missingData``), wrong ones status 3 (``badData``);
* receivers: a user id the fake has not been told is registered answers 5 (``receiverNotRegistered``), one
  that is registered but not subscribed 6 (``receiverNotSubscribed``); ``throttle(n)`` answers the next n
  sends with 12 (``tooManyRequests``).

Each accepted send gets a ``message_token`` of its own, a 64-bit integer as Viber gives (beyond what a JSON
double holds exactly). ``set_webhook`` calls the given URL with a signed ``webhook`` event and succeeds only if
it answers 200; :meth:`FakeViber.callback` then posts signed callbacks there (``X-Viber-Content-Signature``,
the hex HMAC-SHA256 of the body keyed with the auth token).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from tests.integration.fakes.server import ThreadServer

SEND_PARAMS = {
    "receiver", "min_api_version", "sender", "tracking_data", "type", "text", "media", "thumbnail", "size",
    "file_name", "duration", "contact", "location", "sticker_id", "rich_media", "alt_text", "keyboard",
}
TYPES = {"text", "picture", "video", "file", "location", "contact", "sticker", "rich_media", "url"}
ACTION_TYPES = {"reply", "open-url", "location-picker", "share-phone", "none"}
FIRST_TOKEN = 5_741_311_803_571_721_087


@dataclass
class Send:
    """One ``send_message`` request and the fake's answer."""

    headers: dict[str, str]
    body: bytes
    status: int
    message_token: int | None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) <= 2000


def check_send(body: Any) -> None:
    """Raise :class:`_Refused` (status 3 or 4) for a ``send_message`` body Viber's documentation refuses."""
    if not isinstance(body, dict):
        raise _Refused(3, "body must be a JSON object")
    unknown = set(body) - SEND_PARAMS
    if unknown:
        raise _Refused(3, f"unknown parameters {sorted(unknown)}")
    for name in ("receiver", "type", "sender"):
        if name not in body:
            raise _Refused(4, f"missing {name}")
    if not isinstance(body["receiver"], str) or not body["receiver"]:
        raise _Refused(3, "receiver must be a user id")
    sender = body["sender"]
    if not isinstance(sender, dict) or not isinstance(sender.get("name"), str) or not sender["name"]:
        raise _Refused(4, "missing sender.name")
    if len(sender["name"]) > 28 or set(sender) - {"name", "avatar"}:
        raise _Refused(3, "sender.name at most 28 characters; sender has name and avatar only")
    if "avatar" in sender and not _url(sender["avatar"]):
        raise _Refused(3, "sender.avatar must be a URL")
    if "tracking_data" in body and (not isinstance(body["tracking_data"], str) or len(body["tracking_data"]) > 4096):
        raise _Refused(3, "tracking_data must be a string of at most 4096 characters")
    kind = body["type"]
    if kind not in TYPES:
        raise _Refused(3, f"unknown type {kind!r}")
    if kind == "text":
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise _Refused(4, "text message without text")
        if len(text) > 7000:
            raise _Refused(3, "text longer than 7000 characters")
    elif kind == "picture":
        if "media" not in body or "text" not in body:
            raise _Refused(4, "picture needs media and text")
        if not _url(body["media"]) or not isinstance(body["text"], str) or len(body["text"]) > 768:
            raise _Refused(3, "picture media must be a URL and text at most 768 characters")
    elif kind == "rich_media":
        _check_rich_media(body)
    else:
        raise _Refused(3, f"the fake does not take {kind} messages")


def _check_rich_media(body: dict[str, Any]) -> None:
    version = body.get("min_api_version")
    if not isinstance(version, int) or version < 2:
        raise _Refused(3, "rich_media needs min_api_version 2 or more")
    rich = body.get("rich_media")
    if not isinstance(rich, dict) or rich.get("Type") != "rich_media" or not isinstance(rich.get("Buttons"), list):
        raise _Refused(4, "rich_media needs Type rich_media and Buttons")
    columns = rich.get("ButtonsGroupColumns", 6)
    rows = rich.get("ButtonsGroupRows", 7)
    if not (isinstance(columns, int) and 1 <= columns <= 6 and isinstance(rows, int) and 1 <= rows <= 7):
        raise _Refused(3, "ButtonsGroupColumns 1-6, ButtonsGroupRows 1-7")
    buttons = rich["Buttons"]
    if not buttons:
        raise _Refused(4, "rich_media without buttons")
    used = 0
    for button in buttons:
        if not isinstance(button, dict):
            raise _Refused(3, "a button must be an object")
        c, r = button.get("Columns", 6), button.get("Rows", 1)
        if not (isinstance(c, int) and 1 <= c <= columns and isinstance(r, int) and 1 <= r <= rows):
            raise _Refused(3, f"button size {c}x{r} does not fit the group {columns}x{rows}")
        used += c * r
        action = button.get("ActionType", "reply")
        if action not in ACTION_TYPES:
            raise _Refused(3, f"unknown ActionType {action!r}")
        if action == "open-url" and not _url(button.get("ActionBody")):
            raise _Refused(3, "an open-url button needs a URL as ActionBody")
        if "Image" in button and not _url(button["Image"]):
            raise _Refused(3, "Image must be a URL")
        if "Text" in button and (not isinstance(button["Text"], str) or len(button["Text"]) > 250):
            raise _Refused(3, "button Text at most 250 characters")
        if not any(k in button for k in ("Text", "Image", "BgMedia")):
            raise _Refused(4, "a button shows nothing")
    if used > columns * rows:
        raise _Refused(3, "the buttons do not fit the group")
    if "alt_text" in body and not isinstance(body["alt_text"], str):
        raise _Refused(3, "alt_text must be a string")


def sign(auth_token: str, body: bytes) -> str:
    """Viber's callback signature."""
    return hmac.new(auth_token.encode(), body, hashlib.sha256).hexdigest()


class FakeViber(ThreadServer):
    """The fake bot API for one bot (its auth token)."""

    def __init__(self, auth_token: str, *, webhook_set: bool = False) -> None:
        super().__init__()
        self.auth_token = auth_token
        self.webhook: str | None = "preset" if webhook_set else None
        self.event_types: list[str] = []
        self.registered: set[str] = set()
        self.subscribed: set[str] = set()
        self.sends: list[Send] = []
        self.set_webhook_calls: list[dict[str, Any]] = []
        self._throttle = 0
        self.held: dict[str, threading.Event] = {}
        """Receivers whose sends get no answer until their event is set."""
        self.waiting: list[str] = []
        """Receivers of the sends being held now."""
        self._tokens = itertools.count(FIRST_TOKEN)
        self._session: aiohttp.ClientSession | None = None

    def add_user(self, user_id: str, *, subscribed: bool = True) -> str:
        """Make ``user_id`` a Viber user (subscribed to the bot unless told otherwise)."""
        with self.lock:
            self.registered.add(user_id)
            if subscribed:
                self.subscribed.add(user_id)
        return user_id

    def hold(self, receiver: str) -> threading.Event:
        """Leave each send to ``receiver`` unanswered until the returned event is set."""
        with self.lock:
            event = self.held[receiver] = threading.Event()
        return event

    def throttle(self, n: int) -> None:
        """Answer the next ``n`` valid sends with status 12 (``tooManyRequests``)."""
        with self.lock:
            self._throttle += n

    def accepted(self) -> list[Send]:
        with self.lock:
            return [s for s in self.sends if s.status == 0]

    def sends_to(self, receiver: str) -> list[Send]:
        with self.lock:
            return [s for s in self.sends if s.json.get("receiver") == receiver]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/pa/send_message", self._send_message)
        app.router.add_post("/pa/set_webhook", self._set_webhook)

    @staticmethod
    def _answer(status: int, message: str, **extra: Any) -> web.Response:
        # Viber answers HTTP 200 whatever the status; message_token is a bare 64-bit integer
        return web.json_response({"status": status, "status_message": message, **extra})

    async def _send_message(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.headers.get("X-Viber-Auth-Token") != self.auth_token:
            return self._record(request, raw, self._answer(2, "invalidAuthToken"), 2, None)
        if self.webhook is None:
            return self._record(request, raw, self._answer(10, "webhookNotSet"), 10, None)
        if not request.content_type.startswith("application/json"):
            return self._record(request, raw, self._answer(3, "badData"), 3, None)
        try:
            body = json.loads(raw)
            check_send(body)
        except ValueError:
            return self._record(request, raw, self._answer(3, "badData"), 3, None)
        except _Refused as exc:
            name = "missingData" if exc.status == 4 else "badData"
            return self._record(request, raw, self._answer(exc.status, f"{name}: {exc.message}"), exc.status, None)
        receiver = body["receiver"]
        with self.lock:
            held = self.held.get(receiver)
            if held is not None:
                self.waiting.append(receiver)
        while held is not None and not held.is_set():
            await asyncio.sleep(0.02)
        with self.lock:
            if receiver not in self.registered:
                status, message = 5, "receiverNotRegistered"
            elif receiver not in self.subscribed:
                status, message = 6, "receiverNotSubscribed"
            elif self._throttle > 0:
                self._throttle -= 1
                status, message = 12, "tooManyRequests"
            else:
                status, message = 0, "ok"
        if status:
            return self._record(request, raw, self._answer(status, message), status, None)
        token = next(self._tokens)
        answer = self._answer(0, "ok", message_token=token, chat_hostname="SN-CHAT-01_", billing_status=1)
        return self._record(request, raw, answer, 0, token)

    def _record(self, request: web.Request, raw: bytes, answer: web.Response, status: int,
                token: int | None) -> web.Response:
        with self.lock:
            self.sends.append(Send(dict(request.headers), raw, status, token))
        return answer

    async def _set_webhook(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Viber-Auth-Token") != self.auth_token:
            return self._answer(2, "invalidAuthToken")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._answer(3, "badData")
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return self._answer(4, "missingData")
        self.set_webhook_calls.append(body)
        url = body["url"]
        event = {"event": "webhook", "timestamp": int(time.time() * 1000), "chat_hostname": "SN-CHAT-01_",
                 "message_token": next(self._tokens)}
        status = await self._post(url, event)
        if status != 200:
            return self._answer(1, f"invalidUrl: the webhook answered {status}")
        self.webhook = url
        self.event_types = body.get("event_types") or ["delivered", "seen", "failed", "subscribed",
                                                        "unsubscribed", "conversation_started"]
        return self._answer(0, "ok", event_types=self.event_types, chat_hostname="SN-CHAT-01_")

    async def _post(self, url: str, event: dict[str, Any], signature: str | None = None) -> int:
        raw = json.dumps(event).encode()
        headers = {"Content-Type": "application/json",
                   "X-Viber-Content-Signature": signature if signature is not None else sign(self.auth_token, raw)}
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(url, data=raw, headers=headers) as answer:
                await answer.read()
                return answer.status
        except aiohttp.ClientError:
            return 0

    def callback(self, event: str, token: int | None = None, *, signature: str | None = None,
                 **fields: Any) -> int:
        """Post a callback to the webhook as Viber does (signed, unless ``signature`` is given); its HTTP status."""
        assert self.webhook is not None and self.webhook != "preset", "set_webhook first"
        body: dict[str, Any] = {"event": event, "timestamp": int(time.time() * 1000), "chat_hostname": "SN-548_"}
        if token is not None:
            body["message_token"] = token
        body.update(fields)
        return self.run(self._post(self.webhook, body, signature))

    def stop(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            with contextlib.suppress(Exception):
                self.run(session.close())
        super().stop()
