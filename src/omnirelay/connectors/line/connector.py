"""LINE over the Messaging API: push messages, ``POST {base_url}/v2/bot/message/push``.

A step's ``from`` picks one of the configured channels (a step without ``from`` uses the only channel). The
user is the destination's ``lineUserKey`` (the LINE user id the channel's webhooks name). The OMNI ``line``
object becomes up to two LINE message objects of one push (:func:`build_messages`).

Every push carries an ``X-Line-Retry-Key`` derived from the message and the step (:func:`retry_key`), so a
push sent again after a lost answer (a timeout, a 5xx, a crash) is never delivered twice: LINE answers 409
to a key it already accepted, which counts as accepted.

LINE sends no delivery receipt for push messages, and accepts (200) a push to a user who blocked the
account without delivering it (its FAQ says so): a 200 is the last word LINE gives, so it counts as
DELIVERED, as an SMTP server's 250 does. A user id LINE does not know (never a friend of this account) is
answered 400 "Failed to send messages": not a LINE user, which fails over at once.

What LINE does say is the ``unfollow`` webhook (:mod:`omnirelay.connectors.line.webhooks`): the user blocked the
account. The receiver remembers it in the store (capability memory under :func:`blocked_key`, until a
``follow`` says otherwise), and a push to a user who blocked the channel is not sent: it is REJECTED
``EC_BLOCKED_USER`` and fails over at once (one look-up per batch).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from omnirelay.config import LineChannelConfig, LineConfig
from omnirelay.connectors.base import Answered, LaterReport, SubmitResult, submit_each
from omnirelay.connectors.counters import CounterSpec
from omnirelay.connectors.http import (
    BAD_REQUEST,
    CONFIGURATION,
    NOT_A_USER,
    THROTTLED,
    TRANSIENT,
    ContentError,
    HttpConnector,
    Refused,
    Verdict,
    refused,
    verdict_result,
)
from omnirelay.domain.delivery import Submission
from omnirelay.domain.lifecycle import Outcome
from omnirelay.domain.model import LineData

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics
    from omnirelay.store.base import Store

log = logging.getLogger("omnirelay.line")

CHANNEL = "LINE"
PUSH_PATH = "/v2/bot/message/push"
RETRY_KEY_HEADER = "X-Line-Retry-Key"
ACCEPTED_REQUEST_HEADER = "X-Line-Accepted-Request-Id"
"""The header of a 409: the request id of the push that was accepted under the same retry key."""
REQUEST_ID_HEADER = "X-Line-Request-Id"
TEXT_MAX = 5000
RETRY_KEY_NAMESPACE = uuid.UUID("6f0d6c1e-3b1f-5a7e-9c42-6c696e652d31")
BLOCKED_ACCOUNT = 0
"""The capability memory of blocked users is the channel's, not an account's: it is kept under account 0."""
BLOCKED_FOR_S = 10 * 365 * 86400.0
"""How long an unfollow is remembered when no follow comes (LINE says nothing more about that user)."""


def blocked_key(sender: str) -> str:
    """The capability-memory channel under which the users who blocked the LINE channel ``sender`` are kept
    (not ``LINE`` itself: the engine's own memory is per account and main address, this is per LINE channel)."""
    return f"LINE:{sender}:blocked"


def retry_key(sub: Submission) -> str:
    """The ``X-Line-Retry-Key`` of a step: a UUID derived from the message and the step, the same for every
    try of that step and different for every other step."""
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"{sub.account_id}/{sub.message_id}/{sub.message}/{sub.step}"))


# --- OMNI line object -> LINE messages ---------------------------------------------------------------------


def _text(text: str) -> dict[str, Any]:
    # LINE counts a character outside the BMP (most emoji) as two, as UTF-16 does
    if len(text.encode("utf-16-le")) // 2 > TEXT_MAX:
        raise ContentError(f"line.text must be at most {TEXT_MAX} characters (LINE's limit; an emoji counts 2)")
    return {"type": "text", "text": text}


def _flex_contents(contents: dict[str, Any]) -> dict[str, Any]:
    # Infobip names the container kinds BUBBLE / CAROUSEL; LINE wants them in lower case
    kind = contents.get("type")
    if isinstance(kind, str) and kind.upper() in ("BUBBLE", "CAROUSEL"):
        return {**contents, "type": kind.lower()}
    return contents


def build_messages(line: dict[str, Any] | LineData) -> list[dict[str, Any]]:
    """The LINE message objects for an OMNI ``line`` object, in the order they are shown.

    ``type`` TEXT (or none) sends ``text``; IMAGE and VIDEO send ``url`` with ``thumbnailUrl`` as the preview
    (an image without one previews itself); AUDIO sends ``url`` with ``duration`` (milliseconds); STICKER
    sends ``packageId`` and ``stickerId``; FLEX sends ``contents`` with ``altText``. A ``text`` given with a
    media type follows it as a text message of the same push. Raises :class:`ContentError` when a field a
    type needs is missing.
    """
    try:
        data = line if isinstance(line, LineData) else msgspec.convert(line, LineData)
    except msgspec.ValidationError as exc:
        raise ContentError(f"line: {exc}") from None
    kind = data.type.value if data.type is not None else "TEXT"
    if kind == "TEXT":
        if not data.text:
            raise ContentError("line.text is required for a TEXT message")
        return [_text(data.text)]
    first: dict[str, Any]
    if kind in ("IMAGE", "VIDEO", "AUDIO"):
        if not data.url:
            raise ContentError(f"line.url is required for an {kind} message")
        if kind == "IMAGE":
            first = {"type": "image", "originalContentUrl": data.url, "previewImageUrl": data.thumbnailUrl or data.url}
        elif kind == "VIDEO":
            if not data.thumbnailUrl:
                raise ContentError("line.thumbnailUrl is required for a VIDEO message (LINE's preview image)")
            first = {"type": "video", "originalContentUrl": data.url, "previewImageUrl": data.thumbnailUrl}
        else:
            try:
                duration = int(data.duration) if data.duration is not None else None
            except ValueError:
                duration = None
            if duration is None or duration <= 0:
                raise ContentError("line.duration is required for an AUDIO message (milliseconds, above 0)")
            first = {"type": "audio", "originalContentUrl": data.url, "duration": duration}
    elif kind == "STICKER":
        if not data.packageId or not data.stickerId:
            raise ContentError("line.packageId and line.stickerId are required for a STICKER message")
        first = {"type": "sticker", "packageId": str(data.packageId), "stickerId": str(data.stickerId)}
    else:  # FLEX
        if not data.contents or not data.altText:
            raise ContentError("line.contents and line.altText are required for a FLEX message")
        first = {"type": "flex", "altText": data.altText, "contents": _flex_contents(data.contents)}
    return [first, _text(data.text)] if data.text else [first]


def push_body(to: str, line: dict[str, Any] | LineData) -> dict[str, Any]:
    """The push request body for ``line`` sent to the user ``to``."""
    return {"to": to, "messages": build_messages(line)}


# --- answers -> outcomes -------------------------------------------------------------------------------


QUOTA = Verdict(Outcome.REJECTED, "EC_ACCOUNT_ISSUE")

#: What LINE says (``message`` of a 400) about a user it cannot send to.
NOT_A_USER_TEXTS = ("failed to send messages", "hasn't added the line official account as a friend")


def classify(status: int, message: str) -> Verdict:
    """The verdict for a refused push: 400 naming an unknown user → not a user; 401 and 403 (a token or a
    plan that may not push) → configuration; 429 → throttled, unless the month's message quota is used up;
    5xx → try again; the rest → bad request."""
    text = message.lower()
    if status == 400 and any(t in text for t in NOT_A_USER_TEXTS):
        return NOT_A_USER
    if status in (401, 403):
        return CONFIGURATION
    if status == 429:
        return QUOTA if "monthly limit" in text else THROTTLED
    if status >= 500:
        return TRANSIENT
    return BAD_REQUEST


class _Detail(msgspec.Struct):
    message: str | None = None
    property: str | None = None


class _LineSent(msgspec.Struct):
    id: str | None = None


class _LineAnswer(msgspec.Struct):
    message: str | None = None
    details: list[_Detail] = msgspec.field(default_factory=list)
    sentMessages: list[_LineSent] = msgspec.field(default_factory=list)


_answer_decoder = msgspec.json.Decoder(_LineAnswer)


def answer_to_result(status: int, body: bytes, headers: dict[str, str], tries: int = 1) -> SubmitResult:
    """What a push answer means: a 200 (or a 409, the retry key accepted before) is delivered, with the first
    sent message's id (else the request id) as the provider id; anything else an outcome naming LINE's text."""
    try:
        answer = _answer_decoder.decode(body) if body else _LineAnswer()
    except (msgspec.DecodeError, msgspec.ValidationError):
        answer = _LineAnswer()
    lower = {k.lower(): v for k, v in headers.items()}
    if status in (200, 409):
        if status == 200:
            request_id = lower.get(REQUEST_ID_HEADER.lower())
            detail = "LINE accepted the push"
        else:
            request_id = lower.get(ACCEPTED_REQUEST_HEADER.lower())
            detail = "LINE had accepted this push before (retry key)"
        sent = next((s.id for s in answer.sentMessages if s.id), None)
        return SubmitResult(sent or request_id, [LaterReport(0.0, Outcome.DELIVERED, detail=detail)])
    message = answer.message or body[:300].decode("utf-8", "replace")
    details = "; ".join(f"{d.property}: {d.message}" if d.property else str(d.message) for d in answer.details)
    verdict = classify(status, message)
    detail = f"LINE answered HTTP {status}: {message}" + (f" ({details})" if details else "")
    return verdict_result(verdict, detail, tries)


# --- the connector -------------------------------------------------------------------------------------

SENDS = CounterSpec(
    "omnirelay_line_sends",
    "LINE push messages by channel and result (delivered, or the outcome of a refusal)",
    ("sender", "result"),
)


class Line(HttpConnector[LineChannelConfig]):
    """A :class:`~omnirelay.connectors.base.Connector` for LINE steps through the Messaging API's push message."""

    provider = "LINE"
    sender_kind = "LINE channel"
    send_kind = "LINE push"
    sends = SENDS

    def __init__(self, config: LineConfig, metrics: Metrics | None = None, store: Store | None = None) -> None:
        super().__init__({c.sender: c for c in config.channels}, metrics)
        self.store = store

    async def submit(self, batch: list[Submission], answered: Answered | None = None) -> list[SubmitResult]:
        """Push each submission (concurrently); one result per submission, in order, each also given to
        ``answered`` as soon as its request is answered."""
        blocked = await self._blocked(batch)

        def held(sub: Submission, channel: LineChannelConfig) -> SubmitResult | None:
            if (channel.sender, sub.address) not in blocked:
                return None
            return refused("EC_BLOCKED_USER", f"the LINE user blocked {channel.sender} (unfollow event): not pushed")

        async def one(sub: Submission) -> SubmitResult:
            return await self.submit_one(sub, held)

        return await submit_each(batch, one, answered)

    async def _blocked(self, batch: list[Submission]) -> set[tuple[str, str]]:
        """(sender, user) pairs of the batch whose user blocked that channel, by one look-up per channel."""
        if self.store is None:
            return set()
        users: dict[str, list[str]] = {}
        for sub in batch:
            channel = self.sender_for(sub.sender)
            if channel is not None:
                users.setdefault(channel.sender, []).append(sub.address)
        found: set[tuple[str, str]] = set()
        now = time.time()
        for sender, addresses in users.items():
            try:
                held = await self.store.capabilities_of(BLOCKED_ACCOUNT, blocked_key(sender), addresses, now)
            except Exception:  # the push is better sent than held up by a failed look-up
                log.exception("LINE blocked-user look-up for %s failed", sender)
                continue
            found.update((sender, user) for user in held)
        return found

    def prepare(self, sub: Submission, sender: LineChannelConfig) -> dict[str, Any]:
        try:
            return push_body(sub.address, sub.content.get("line") or {})
        except ContentError as exc:
            raise Refused("EC_BAD_REQUEST", str(exc)) from None

    async def send(self, sender: LineChannelConfig, sub: Submission, body: dict[str, Any]) -> SubmitResult:
        headers = {"Authorization": f"Bearer {sender.channel_access_token}", RETRY_KEY_HEADER: retry_key(sub)}
        answer = await self.post_json(sender.base_url.rstrip("/") + PUSH_PATH, body, headers)
        return answer_to_result(answer.status, answer.body, dict(answer.headers), sub.tries)
