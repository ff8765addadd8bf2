"""Facebook Messenger over the Graph API's Send API: ``POST {base_url}/{api_version}/{page_id}/messages``.

A step's ``from`` picks one of the configured pages (a step without ``from`` uses the only page). The user is
the destination's ``facebookUserKey``: the page-scoped id (PSID) Messenger gave the user. The OMNI ``facebook``
object becomes one Send API message (:func:`build_message`); a 200 answer gives the message's ``mid``, and the
outcome comes later by webhook (:mod:`omnirelay.connectors.messenger.webhooks`: ``message_deliveries`` and
``message_reads``). Graph errors map to outcomes with :func:`classify`.

The provider id is ``{psid}:{mid}``: a delivery names its mids, but a read names only the user and a
watermark (every message to that user before it was read), so the webhook finds the steps of a read by the
user's prefix.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from omnirelay.config import MessengerConfig, MessengerPageConfig
from omnirelay.connectors.base import LaterReport, SubmitResult
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
    verdict_result,
)
from omnirelay.connectors.meta import GraphError, GraphErrorBody
from omnirelay.domain.delivery import Submission
from omnirelay.domain.lifecycle import Outcome
from omnirelay.domain.model import FacebookData

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.messenger")

CHANNEL = "FACEBOOK"


def provider_id(psid: str, mid: str) -> str:
    """The provider id of a sent message: the user's PSID and the message's mid."""
    return f"{psid}:{mid}"


# --- OMNI facebook object -> Send API message -----------------------------------------------------------

#: OMNI ``facebook.type`` -> Messenger attachment type.
ATTACHMENT_TYPES = {"IMAGE": "image", "AUDIO": "audio", "VIDEO": "video", "FILE": "file"}


def build_message(psid: str, facebook: dict[str, Any] | FacebookData, page: MessengerPageConfig) -> dict[str, Any]:
    """The Send API request body for an OMNI ``facebook`` object sent to the user ``psid``.

    ``type`` ``TEXT`` (or no type) sends ``text``; ``IMAGE``, ``AUDIO``, ``VIDEO`` and ``FILE`` send the
    attachment at ``url`` (Messenger gives an attachment no caption, so ``text`` is not sent with one).
    Raises :class:`ContentError` when nothing can be sent.
    """
    try:
        data = facebook if isinstance(facebook, FacebookData) else msgspec.convert(facebook, FacebookData)
    except msgspec.ValidationError as exc:
        raise ContentError(f"facebook: {exc}") from None
    kind = (data.type or "TEXT").upper()
    message: dict[str, Any]
    if kind == "TEXT":
        if not data.text:
            raise ContentError("facebook.text is required for a TEXT message")
        if len(data.text) > 2000:
            raise ContentError("facebook.text must be at most 2000 characters (Messenger's limit)")
        message = {"text": data.text}
    elif kind in ATTACHMENT_TYPES:
        if not data.url:
            raise ContentError(f"facebook.url is required for a {kind} message")
        message = {"attachment": {"type": ATTACHMENT_TYPES[kind], "payload": {"url": data.url, "is_reusable": False}}}
    else:
        raise ContentError(f"facebook.type {data.type!r} is not one of TEXT, IMAGE, AUDIO, VIDEO, FILE")
    body: dict[str, Any] = {"recipient": {"id": psid}, "message": message}
    if page.message_tag:
        body["messaging_type"] = "MESSAGE_TAG"
        body["tag"] = page.message_tag
    else:
        body["messaging_type"] = "UPDATE"
    return body


# --- Graph error codes -> outcomes ---------------------------------------------------------------------


NO_SESSION = Verdict(Outcome.REJECTED, "EC_NO_SESSION")

#: Subcodes that decide on their own, whatever the code (developers.facebook.com/docs/messenger-platform/error-codes).
SUBCODES: dict[int, Verdict] = {
    1545041: NOT_A_USER,  # "This person isn't available right now" (blocked the page, deactivated)
    2018001: NOT_A_USER,  # "No matching user found" (no PSID of this page)
    2018065: NO_SESSION,  # sent outside the allowed window (24 hours after the user's last message)
    2018108: NO_SESSION,
    2018278: NO_SESSION,
    2018109: BAD_REQUEST,  # attachment size exceeds the limit
    2018047: Verdict(Outcome.REJECTED, "EC_MEDIA_HOSTING_ERROR"),  # the attachment could not be fetched
    2018294: Verdict(Outcome.REJECTED, "EC_MEDIA_HOSTING_ERROR"),
}
CODES: dict[int, Verdict] = {
    551: NOT_A_USER,  # the person is not available
    4: THROTTLED,  # application request limit
    32: THROTTLED,  # page request limit
    613: THROTTLED,  # calls to this API exceeded the rate limit
    1: TRANSIENT,  # unknown error
    2: TRANSIENT,  # temporary service error
    1200: TRANSIENT,  # temporary send message failure
    190: CONFIGURATION,  # the access token expired or is invalid
    102: CONFIGURATION,  # session key invalid
    10: CONFIGURATION,  # permission denied (without a subcode above)
    230: CONFIGURATION,  # requires the pages_messaging permission
    368: Verdict(Outcome.REJECTED, "EC_ACCOUNT_ISSUE"),  # temporarily blocked for policy violations
    100: BAD_REQUEST,  # invalid parameter
}


def classify(code: int | None, subcode: int | None, http_status: int) -> Verdict:
    """The verdict for a Graph error: its subcode first, then its code (200–299: permissions), then the HTTP
    status (429 and 5xx are tried again, 401 and 403 are configuration errors, the rest bad requests)."""
    if subcode is not None and subcode in SUBCODES:
        return SUBCODES[subcode]
    if code is not None:
        verdict = CODES.get(code)
        if verdict is not None:
            return verdict
        if 200 <= code <= 299:
            return CONFIGURATION
    if http_status == 429 or http_status >= 500:
        return TRANSIENT
    if http_status in (401, 403):
        return CONFIGURATION
    return BAD_REQUEST


class _MessengerSendAnswer(msgspec.Struct):
    recipient_id: str | None = None
    message_id: str | None = None


_error_decoder = msgspec.json.Decoder(GraphErrorBody)
_answer_decoder = msgspec.json.Decoder(_MessengerSendAnswer)


def answer_to_result(psid: str, status: int, body: bytes, tries: int = 1) -> SubmitResult:
    """What a Send API answer means: the mid of a 200 (as ``{psid}:{mid}``), else an outcome naming the Graph
    error in its ``detail``."""
    if status == 200:
        try:
            answer = _answer_decoder.decode(body)
        except msgspec.DecodeError:
            answer = _MessengerSendAnswer()
        if answer.message_id:
            return SubmitResult(provider_id(psid, answer.message_id))
        detail = f"Messenger answered 200 without a message_id: {body[:300].decode('utf-8', 'replace')}"
        return SubmitResult(None, [LaterReport(0.0, Outcome.REJECTED, "EC_PROVIDER_INTERNAL_ERROR", detail=detail)])
    try:
        graph: GraphError | None = _error_decoder.decode(body).error
    except msgspec.DecodeError:
        graph = None
    if graph is not None:
        verdict = classify(graph.code, graph.error_subcode, status)
        head = f"Messenger error {graph.code}" if graph.code is not None else "Messenger error"
        if graph.error_subcode is not None:
            head += f" (subcode {graph.error_subcode})"
        detail = f"HTTP {status}, {head}: {graph.message or ''}".rstrip(": ")
    else:
        verdict = classify(None, None, status)
        detail = f"Messenger answered HTTP {status}: {body[:500].decode('utf-8', 'replace')}"
    return verdict_result(verdict, detail, tries)


# --- the connector -------------------------------------------------------------------------------------

SENDS = CounterSpec(
    "omnirelay_messenger_sends",
    "Messenger Send API sends by page and result (accepted, or the outcome of a refusal)",
    ("sender", "result"),
)


class Messenger(HttpConnector[MessengerPageConfig]):
    """A :class:`~omnirelay.connectors.base.Connector` for FACEBOOK steps through the Messenger Send API."""

    provider = "Messenger"
    sender_kind = "Messenger page"
    sends = SENDS

    def __init__(self, config: MessengerConfig, metrics: Metrics | None = None) -> None:
        super().__init__({p.sender: p for p in config.pages}, metrics)

    def prepare(self, sub: Submission, sender: MessengerPageConfig) -> dict[str, Any]:
        try:
            return build_message(sub.address, sub.content.get("facebook") or {}, sender)
        except ContentError as exc:
            raise Refused("EC_BAD_REQUEST", str(exc)) from None

    async def send(self, sender: MessengerPageConfig, sub: Submission, body: dict[str, Any]) -> SubmitResult:
        url = f"{sender.base_url.rstrip('/')}/{sender.api_version}/{sender.page_id}/messages"
        answer = await self.post_json(url, body, {"Authorization": f"Bearer {sender.page_access_token}"})
        return answer_to_result(sub.address, answer.status, answer.body, sub.tries)
