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

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
from prometheus_client import Counter

from omnirelay.config import MessengerConfig, MessengerPageConfig
from omnirelay.connectors.base import Answered, LaterReport, Submission, SubmitResult, submit_each
from omnirelay.domain.model import FacebookData

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.messenger")

CHANNEL = "FACEBOOK"
USER_AGENT = "omnirelay/0.1.0"
MAX_CONCURRENCY = 32
REQUEST_TIMEOUT_S = 30.0
RETRY_CAP_S = 60.0


class ContentError(ValueError):
    """The OMNI ``facebook`` object cannot become a Send API message; the text says why."""


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


@dataclass(frozen=True)
class Verdict:
    """What a Graph error means for the step: an outcome with a catalogue error name, and whether the user
    cannot be reached on Messenger at all."""

    outcome: str
    error: str
    not_a_user: bool = False


NOT_A_USER = Verdict("REJECTED", "EC_UNKNOWN_USER", not_a_user=True)
THROTTLED = Verdict("RETRY", "EC_TOO_MANY_REQUESTS")
TRANSIENT = Verdict("RETRY", "EC_PROVIDER_INTERNAL_ERROR")
CONFIGURATION = Verdict("REJECTED", "EC_CONFIGURATION_ERROR")
NO_SESSION = Verdict("REJECTED", "EC_NO_SESSION")
BAD_REQUEST = Verdict("REJECTED", "EC_BAD_REQUEST")

#: Subcodes that decide on their own, whatever the code (developers.facebook.com/docs/messenger-platform/error-codes).
SUBCODES: dict[int, Verdict] = {
    1545041: NOT_A_USER,  # "This person isn't available right now" (blocked the page, deactivated)
    2018001: NOT_A_USER,  # "No matching user found" (no PSID of this page)
    2018065: NO_SESSION,  # sent outside the allowed window (24 hours after the user's last message)
    2018108: NO_SESSION,
    2018278: NO_SESSION,
    2018109: BAD_REQUEST,  # attachment size exceeds the limit
    2018047: Verdict("REJECTED", "EC_MEDIA_HOSTING_ERROR"),  # the attachment could not be fetched
    2018294: Verdict("REJECTED", "EC_MEDIA_HOSTING_ERROR"),
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
    368: Verdict("REJECTED", "EC_ACCOUNT_ISSUE"),  # temporarily blocked for policy violations
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


def retry_after(tries: int) -> float:
    """Seconds to wait before submitting a throttled step again: 1, 2, 4, … up to :data:`RETRY_CAP_S`."""
    return float(min(2 ** max(tries - 1, 0), RETRY_CAP_S))


class _GraphError(msgspec.Struct):
    code: int | None = None
    error_subcode: int | None = None
    message: str | None = None
    type: str | None = None
    fbtrace_id: str | None = None


class _GraphErrorBody(msgspec.Struct):
    error: _GraphError


class _SendAnswer(msgspec.Struct):
    recipient_id: str | None = None
    message_id: str | None = None


_error_decoder = msgspec.json.Decoder(_GraphErrorBody)
_answer_decoder = msgspec.json.Decoder(_SendAnswer)


def answer_to_result(psid: str, status: int, body: bytes, tries: int = 1) -> SubmitResult:
    """What a Send API answer means: the mid of a 200 (as ``{psid}:{mid}``), else an outcome naming the Graph
    error in its ``detail``."""
    if status == 200:
        try:
            answer = _answer_decoder.decode(body)
        except msgspec.DecodeError:
            answer = _SendAnswer()
        if answer.message_id:
            return SubmitResult(provider_id(psid, answer.message_id))
        detail = f"Messenger answered 200 without a message_id: {body[:300].decode('utf-8', 'replace')}"
        return SubmitResult(None, [LaterReport(0.0, "REJECTED", "EC_PROVIDER_INTERNAL_ERROR", detail=detail)])
    try:
        graph: _GraphError | None = _error_decoder.decode(body).error
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


def verdict_result(verdict: Verdict, detail: str, tries: int) -> SubmitResult:
    """A refusal (or a request to try again after :func:`retry_after`) for ``verdict``."""
    after_s = retry_after(tries) if verdict.outcome == "RETRY" else 0.0
    return SubmitResult(None, [LaterReport(after_s, verdict.outcome, verdict.error, verdict.not_a_user, detail)])


# --- the connector -------------------------------------------------------------------------------------

_SEND_COUNTERS: weakref.WeakKeyDictionary[Metrics, Counter] = weakref.WeakKeyDictionary()


def _send_counter(metrics: Metrics) -> Counter:
    counter = _SEND_COUNTERS.get(metrics)
    if counter is None:
        counter = _SEND_COUNTERS[metrics] = Counter(
            "omnirelay_messenger_sends",
            "Messenger Send API sends by page and result (accepted, or the outcome of a refusal)",
            ["sender", "result"],
            registry=metrics.registry,
        )
    return counter


class Messenger:
    """A :class:`~omnirelay.connectors.base.Channel` for FACEBOOK steps through the Messenger Send API."""

    def __init__(self, config: MessengerConfig, metrics: Metrics | None = None) -> None:
        self.pages: dict[str, MessengerPageConfig] = {p.sender: p for p in config.pages}
        self.metrics = metrics
        self._counter = _send_counter(metrics) if metrics is not None else None
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(MAX_CONCURRENCY)

    def page_for(self, name: str | None) -> MessengerPageConfig | None:
        """The page a step's ``from`` names; a step without ``from`` uses the only page, if there is one."""
        if name is None:
            return next(iter(self.pages.values())) if len(self.pages) == 1 else None
        return self.pages.get(name)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
                headers={"User-Agent": USER_AGENT},
                connector=aiohttp.TCPConnector(limit=MAX_CONCURRENCY),
            )
        return self._session

    async def submit(self, batch: list[Submission], answered: Answered | None = None) -> list[SubmitResult]:
        """Send each submission (concurrently); one result per submission, in order, each also given to
        ``answered`` as soon as its request is answered."""
        return await submit_each(batch, self._submit_one, answered)

    async def _submit_one(self, sub: Submission) -> SubmitResult:
        page = self.page_for(sub.sender)
        if page is None:
            known = ", ".join(sorted(self.pages)) or "none"
            detail = f"no Messenger page {sub.sender!r} is configured (configured: {known})"
            return self._count(sub.sender or "", _refused("EC_SENDER_NOT_REGISTERED", detail))
        try:
            body = build_message(sub.address, sub.content.get("facebook") or {}, page)
        except ContentError as exc:
            return self._count(page.sender, _refused("EC_BAD_REQUEST", str(exc)))
        try:
            result = await self._post(page, sub.address, body, sub.tries)
        except Exception as exc:  # one broken message must not fail the batch
            log.exception("Messenger send for message %s failed", sub.message_id)
            result = _refused("EC_INTERNAL_ERROR", f"Messenger connector error: {exc!r}")
        return self._count(page.sender, result)

    async def _post(self, page: MessengerPageConfig, psid: str, body: dict[str, Any], tries: int) -> SubmitResult:
        url = f"{page.base_url.rstrip('/')}/{page.api_version}/{page.page_id}/messages"
        headers = {"Authorization": f"Bearer {page.page_access_token}", "Content-Type": "application/json"}
        async with self._limit:
            try:
                async with self._http().post(url, data=msgspec.json.encode(body), headers=headers) as response:
                    answer = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The Send API has no idempotency key: a retry after a lost answer risks a duplicate, which
                # beats losing the message.
                return verdict_result(TRANSIENT, f"Messenger unreachable: {exc!r}", tries)
        return answer_to_result(psid, status, answer, tries)

    def _count(self, sender: str, result: SubmitResult) -> SubmitResult:
        if self._counter is not None and self.metrics is not None:
            outcome = result.reports[0].outcome.lower() if result.reports else "accepted"
            self.metrics.of(self._counter, sender, outcome).inc()
        return result

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _refused(error: str, detail: str) -> SubmitResult:
    return SubmitResult(None, [LaterReport(0.0, "REJECTED", error, detail=detail)])
