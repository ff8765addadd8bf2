"""WhatsApp over Meta's Cloud API: ``POST {base_url}/{api_version}/{phone_number_id}/messages``.

A step's ``from`` picks one of the configured senders (a WhatsApp Business phone number). The OMNI
``whatsApp`` object becomes one Cloud API message (:func:`build_message`); a 200 answer gives the message's
wamid, and the outcome comes later by status webhook (:mod:`omnirelay.connectors.whatsapp.webhooks`). Graph errors,
whether answered at once or reported by a ``failed`` status, map to outcomes with :func:`classify`.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
from prometheus_client import Counter

from omnirelay.config import WhatsAppConfig, WhatsAppSenderConfig
from omnirelay.connectors.base import Answered, LaterReport, Submission, SubmitResult, submit_each
from omnirelay.domain.model import MediaTemplateData, WhatsAppContact, WhatsAppData

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.whatsapp")

USER_AGENT = "omnirelay/0.1.0"
"""Meta's document requires ``name/x.y.z``; aiohttp's default (``Python/3.11 aiohttp/…``) does not match it."""
MAX_CONCURRENCY = 32
"""Requests in flight at once per connector (Cloud API throughput is about 80 messages a second per number)."""
REQUEST_TIMEOUT_S = 30.0
RETRY_CAP_S = 60.0
WEBHOOK_RETRY_S = 1.0
"""Wait before submitting again after a throttling ``failed`` status (a webhook does not say how often we tried)."""


class ContentError(ValueError):
    """The OMNI ``whatsApp`` object cannot become a Cloud API message; the text says why."""


# --- OMNI whatsApp object -> Cloud API message ---------------------------------------------------------

_NAME_KEYS = {
    "firstName": "first_name",
    "lastName": "last_name",
    "middleName": "middle_name",
    "formattedName": "formatted_name",
    "namePrefix": "prefix",
    "nameSuffix": "suffix",
}
_ADDRESS_KEYS = {
    "street": "street",
    "city": "city",
    "state": "state",
    "zip": "zip",
    "country": "country",
    "countryCode": "country_code",
    "type": "type",
}
_EMAIL_KEYS = {"email": "email", "type": "type"}
_PHONE_KEYS = {"phone": "phone", "type": "type", "waId": "wa_id"}
_URL_KEYS = {"url": "url", "type": "type"}
_ORG_KEYS = {"company": "company", "department": "department", "title": "title"}


def _rename(data: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    # Meta's contact objects forbid unknown properties: keep the known ones only
    return {keys[k]: v for k, v in data.items() if k in keys and v is not None}


def _contact(contact: WhatsAppContact) -> dict[str, Any]:
    card: dict[str, Any] = {}
    if contact.addresses:
        card["addresses"] = [_rename(a, _ADDRESS_KEYS) for a in contact.addresses]
    if contact.birthday:
        card["birthday"] = contact.birthday
    if contact.emails:
        card["emails"] = [_rename(e, _EMAIL_KEYS) for e in contact.emails]
    if contact.name:
        card["name"] = _rename(contact.name, _NAME_KEYS)
    if contact.org:
        card["org"] = _rename(contact.org, _ORG_KEYS)
    if contact.phones:
        card["phones"] = [_rename(p, _PHONE_KEYS) for p in contact.phones]
    if contact.urls:
        card["urls"] = [_rename(u, _URL_KEYS) for u in contact.urls]
    return card


def _coordinate(value: float) -> str:
    # Meta's schema types latitude and longitude as strings
    return repr(float(value))


def _filename(url: str) -> str | None:
    name = posixpath.basename(urlsplit(url).path)
    return name or None


def _template(data: WhatsAppData) -> dict[str, Any]:
    assert data.templateName is not None
    if not data.language:
        raise ContentError("whatsApp.language is required with templateName (the template's language code)")
    components: list[dict[str, Any]] = []
    media: MediaTemplateData = data.mediaTemplateData or MediaTemplateData()
    header = media.header
    if header is not None:
        parameter: dict[str, Any] | None = None
        if header.imageUrl:
            parameter = {"type": "image", "image": {"link": header.imageUrl}}
        elif header.videoUrl:
            parameter = {"type": "video", "video": {"link": header.videoUrl}}
        elif header.documentUrl:
            document: dict[str, Any] = {"link": header.documentUrl}
            filename = header.documentFilename or _filename(header.documentUrl)
            if filename:
                document["filename"] = filename
            parameter = {"type": "document", "document": document}
        elif header.latitude is not None and header.longitude is not None:
            location = {"latitude": _coordinate(header.latitude), "longitude": _coordinate(header.longitude)}
            parameter = {"type": "location", "location": location}
        elif header.textPlaceholder is not None:
            parameter = {"type": "text", "text": header.textPlaceholder}
        if parameter is not None:
            components.append({"type": "header", "parameters": [parameter]})
    placeholders = media.body.placeholders if media.body is not None else None
    if placeholders is None:
        placeholders = data.templateData
    if placeholders:
        components.append({"type": "body", "parameters": [{"type": "text", "text": p} for p in placeholders]})
    for index, button in enumerate(media.buttons or []):
        if button.quickReplyPayload is not None:
            parameters = [{"type": "payload", "payload": button.quickReplyPayload}]
            sub_type = "quick_reply"
        elif button.urlPlaceholder is not None:
            parameters = [{"type": "text", "text": button.urlPlaceholder}]
            sub_type = "url"
        else:
            continue  # a static button needs no parameter, but it keeps its position
        components.append({"type": "button", "sub_type": sub_type, "index": str(index), "parameters": parameters})
    template: dict[str, Any] = {
        "name": data.templateName,
        # the Cloud API knows one policy; OMNI's legacy ``policy`` (DETERMINISTIC / FALLBACK) cannot change it
        "language": {"policy": "deterministic", "code": data.language},
    }
    if components:
        template["components"] = components
    return template


def build_message(to: str, whatsapp: dict[str, Any] | WhatsAppData) -> dict[str, Any]:
    """The Cloud API request body for an OMNI ``whatsApp`` object sent to ``to``.

    One message kind is chosen, in this order: a template (``templateName``), an image, a video, an audio, a
    document (``fileUrl``), a location (``latitude`` and ``longitude``), contacts, a text. ``text`` is the
    caption of an image, a video or a document. Raises :class:`ContentError` when nothing can be sent.
    """
    try:
        data = whatsapp if isinstance(whatsapp, WhatsAppData) else msgspec.convert(whatsapp, WhatsAppData)
    except msgspec.ValidationError as exc:
        raise ContentError(f"whatsApp: {exc}") from None
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    caption = {"caption": data.text} if data.text else {}
    if data.templateName:
        body["type"] = "template"
        body["template"] = _template(data)
    elif data.imageUrl:
        body["type"] = "image"
        body["image"] = {"link": data.imageUrl, **caption}
    elif data.videoUrl:
        body["type"] = "video"
        body["video"] = {"link": data.videoUrl, **caption}
    elif data.audioUrl:
        body["type"] = "audio"
        body["audio"] = {"link": data.audioUrl}
    elif data.fileUrl:
        body["type"] = "document"
        document: dict[str, Any] = {"link": data.fileUrl, **caption}
        filename = _filename(data.fileUrl)
        if filename:
            document["filename"] = filename
        body["document"] = document
    elif data.latitude is not None and data.longitude is not None:
        location: dict[str, Any] = {"latitude": _coordinate(data.latitude), "longitude": _coordinate(data.longitude)}
        if data.locationName:
            location["name"] = data.locationName
        if data.address:
            location["address"] = data.address
        body["type"] = "location"
        body["location"] = location
    elif data.contacts:
        body["type"] = "contacts"
        body["contacts"] = [_contact(c) for c in data.contacts]
    elif data.text:
        body["type"] = "text"
        body["text"] = {"body": data.text, "preview_url": bool(data.previewUrl)}
    else:
        raise ContentError("whatsApp: nothing to send (give text, a media URL, a location, contacts or a template)")
    return body


# --- Graph error codes -> outcomes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a Graph error code means for the step: an outcome of :data:`~omnirelay.connectors.base.OUTCOMES`
    with a catalogue error name, and whether the address is not a WhatsApp user."""

    outcome: str
    error: str
    not_a_user: bool = False


_NOT_A_USER = Verdict("REJECTED", "EC_UNKNOWN_USER", not_a_user=True)
_THROTTLED = Verdict("RETRY", "EC_TOO_MANY_REQUESTS")
_TRANSIENT = Verdict("RETRY", "EC_PROVIDER_INTERNAL_ERROR")
_BAD_REQUEST = Verdict("REJECTED", "EC_BAD_REQUEST")
_TEMPLATE = Verdict("REJECTED", "EC_INVALID_TEMPLATE")
_TEMPLATE_ARGS = Verdict("REJECTED", "EC_INVALID_TEMPLATE_ARGS")
_ACCOUNT = Verdict("REJECTED", "EC_ACCOUNT_ISSUE")
_AUTH = Verdict("REJECTED", "EC_UNAUTHORIZED_ACCESS")

#: Meta's error codes (developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
VERDICTS: dict[int, Verdict] = {
    131026: _NOT_A_USER,  # message undeliverable: not a WhatsApp user, old client, terms not accepted
    131047: Verdict("REJECTED", "EC_NO_SESSION"),  # 24-hour window closed: only templates may be sent
    131049: Verdict("UNDELIVERABLE", "EC_FREQUENCY_CAPPING"),  # per-user marketing limit ("healthy ecosystem")
    131048: Verdict("UNDELIVERABLE", "EC_SPAM_RATE"),  # spam rate limit (the number's quality)
    131050: Verdict("REJECTED", "EC_MARKETING_OPT_OUT"),  # the user stopped marketing messages
    130429: _THROTTLED,  # Cloud API throughput reached
    131056: _THROTTLED,  # (business, consumer) pair rate limit
    4: _THROTTLED,  # application request limit
    80007: _THROTTLED,  # WhatsApp Business Account rate limit
    133016: _THROTTLED,  # registration rate limit
    1: _TRANSIENT,  # unknown API error
    2: _TRANSIENT,  # temporary service error
    131000: _TRANSIENT,  # something went wrong
    131016: _TRANSIENT,  # service unavailable
    131057: _TRANSIENT,  # account in maintenance mode
    133004: _TRANSIENT,  # server temporarily unavailable
    132000: _TEMPLATE_ARGS,  # parameter count mismatch
    132012: _TEMPLATE_ARGS,  # parameter format mismatch
    132001: _TEMPLATE,  # template does not exist (name or language)
    132005: _TEMPLATE,  # hydrated text too long
    132007: _TEMPLATE,  # format character policy violated
    132015: _TEMPLATE,  # template paused
    132016: _TEMPLATE,  # template disabled
    132068: _TEMPLATE,  # flow is blocked
    132069: _TEMPLATE,  # flow is throttled
    131051: Verdict("REJECTED", "EC_MEDIA_UNSUPPORTED"),  # unsupported message type
    131052: Verdict("REJECTED", "EC_MEDIA_HOSTING_ERROR"),  # media download error (the link)
    131053: Verdict("REJECTED", "EC_MEDIA_UPLOAD_ERROR"),  # media upload error
    131008: _BAD_REQUEST,  # required parameter missing
    131009: _BAD_REQUEST,  # parameter value not valid
    131021: _BAD_REQUEST,  # recipient cannot be the sender
    100: _BAD_REQUEST,  # invalid parameter
    135000: _BAD_REQUEST,  # generic user error
    131042: _ACCOUNT,  # payment problem
    131031: _ACCOUNT,  # account locked
    131045: _ACCOUNT,  # incorrect certificate
    133010: _ACCOUNT,  # phone number not registered
    368: _ACCOUNT,  # temporarily blocked for policy violations
    0: _AUTH,  # AuthException
    3: _AUTH,  # capability
    10: _AUTH,  # permission denied
    190: _AUTH,  # access token expired
}
_UNKNOWN = Verdict("UNDELIVERABLE", "EC_PROVIDER_DR_ERROR")


def classify(code: int | None) -> Verdict:
    """The verdict for a Graph / WhatsApp error code; codes 200–299 are permission errors, others unknown
    to this table are undeliverable (the message fails over)."""
    if code is None:
        return _UNKNOWN
    verdict = VERDICTS.get(code)
    if verdict is not None:
        return verdict
    if 200 <= code <= 299:
        return _AUTH
    return _UNKNOWN


def retry_after(tries: int) -> float:
    """Seconds to wait before submitting a throttled step again: 1, 2, 4, … up to :data:`RETRY_CAP_S`."""
    return float(min(2 ** max(tries - 1, 0), RETRY_CAP_S))


def describe_error(code: int | None, title: str | None, message: str | None, details: str | None) -> str:
    """A ``detail`` text naming the WhatsApp error: ``WhatsApp error 131026 (Message undeliverable): …``."""
    head = f"WhatsApp error {code}" if code is not None else "WhatsApp error"
    if title:
        head += f" ({title})"
    parts = [p for p in (message, details) if p and p != title]
    return f"{head}: {' - '.join(parts)}" if parts else head


class _GraphErrorData(msgspec.Struct):
    details: str | None = None


class _GraphError(msgspec.Struct):
    code: int | None = None
    message: str | None = None
    type: str | None = None
    error_subcode: int | None = None
    error_user_title: str | None = None
    error_data: _GraphErrorData | None = None
    fbtrace_id: str | None = None


class _GraphErrorBody(msgspec.Struct):
    error: _GraphError


class _SentMessage(msgspec.Struct):
    id: str | None = None


class _SendAnswer(msgspec.Struct):
    messages: list[_SentMessage] = msgspec.field(default_factory=list)


_error_decoder = msgspec.json.Decoder(_GraphErrorBody)
_answer_decoder = msgspec.json.Decoder(_SendAnswer)


def answer_to_result(status: int, body: bytes, tries: int = 1) -> SubmitResult:
    """What a Cloud API answer to a send means: the wamid of a 200, else an outcome with the Graph code in
    its ``detail`` (a throttled or failing server asks to submit again after :func:`retry_after`)."""
    if status == 200:
        try:
            answer = _answer_decoder.decode(body)
        except msgspec.DecodeError:
            answer = _SendAnswer()
        wamid = answer.messages[0].id if answer.messages else None
        if wamid:
            return SubmitResult(wamid)
        detail = f"WhatsApp answered 200 without a message id: {body[:300].decode('utf-8', 'replace')}"
        return SubmitResult(None, [LaterReport(0.0, "REJECTED", "EC_PROVIDER_INTERNAL_ERROR", detail=detail)])
    try:
        graph: _GraphError | None = _error_decoder.decode(body).error
    except msgspec.DecodeError:
        graph = None
    if graph is not None and graph.code is not None:
        verdict = classify(graph.code)
        if verdict is _UNKNOWN:  # an answer, not a failed delivery: decide by the HTTP status
            verdict = _TRANSIENT if status >= 500 or status == 429 else _BAD_REQUEST
        details = graph.error_data.details if graph.error_data else None
        detail = f"HTTP {status}, " + describe_error(graph.code, graph.error_user_title, graph.message, details)
    else:
        if status >= 500 or status == 429:
            verdict = _TRANSIENT
        elif status in (401, 403):
            verdict = _AUTH
        else:
            verdict = _BAD_REQUEST
        detail = f"WhatsApp answered HTTP {status}: {body[:500].decode('utf-8', 'replace')}"
    return _verdict_result(verdict, detail, tries)


def _verdict_result(verdict: Verdict, detail: str, tries: int) -> SubmitResult:
    after_s = retry_after(tries) if verdict.outcome == "RETRY" else 0.0
    report = LaterReport(after_s, verdict.outcome, verdict.error, verdict.not_a_user, detail)
    return SubmitResult(None, [report])


# --- the connector -------------------------------------------------------------------------------------

_SEND_COUNTERS: weakref.WeakKeyDictionary[Metrics, Counter] = weakref.WeakKeyDictionary()


def _send_counter(metrics: Metrics) -> Counter:
    counter = _SEND_COUNTERS.get(metrics)
    if counter is None:
        counter = _SEND_COUNTERS[metrics] = Counter(
            "omnirelay_whatsapp_sends",
            "Cloud API sends by sender and result (accepted, or the outcome of a refusal)",
            ["sender", "result"],
            registry=metrics.registry,
        )
    return counter


class WhatsAppCloud:
    """A :class:`~omnirelay.connectors.base.Channel` for WHATSAPP steps through Meta's Cloud API.

    One HTTP session (with its connection pool) serves every sender; at most :data:`MAX_CONCURRENCY`
    requests are in flight at once.
    """

    def __init__(self, config: WhatsAppConfig, metrics: Metrics | None = None) -> None:
        self.senders: dict[str, WhatsAppSenderConfig] = {s.sender: s for s in config.senders}
        self.metrics = metrics
        self._counter = _send_counter(metrics) if metrics is not None else None
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(MAX_CONCURRENCY)

    def sender_for(self, name: str | None) -> WhatsAppSenderConfig | None:
        """The sender a step's ``from`` names; a step without ``from`` uses the only sender, if there is one."""
        if name is None:
            return next(iter(self.senders.values())) if len(self.senders) == 1 else None
        return self.senders.get(name) or self.senders.get(name.lstrip("+"))

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
        sender = self.sender_for(sub.sender)
        if sender is None:
            known = ", ".join(sorted(self.senders)) or "none"
            detail = f"no WhatsApp sender {sub.sender!r} is configured (configured: {known})"
            return self._count(sub.sender or "", _refused("EC_SENDER_NOT_REGISTERED", detail))
        try:
            body = build_message(sub.address, sub.content.get("whatsApp") or {})
        except ContentError as exc:
            return self._count(sender.sender, _refused("EC_BAD_REQUEST", str(exc)))
        try:
            result = await self._post(sender, body, sub.tries)
        except Exception as exc:  # one broken message must not fail the batch
            log.exception("WhatsApp send for message %s failed", sub.message_id)
            result = _refused("EC_INTERNAL_ERROR", f"WhatsApp connector error: {exc!r}")
        return self._count(sender.sender, result)

    async def _post(self, sender: WhatsAppSenderConfig, body: dict[str, Any], tries: int) -> SubmitResult:
        url = f"{sender.base_url.rstrip('/')}/{sender.api_version}/{sender.phone_number_id}/messages"
        headers = {"Authorization": f"Bearer {sender.access_token}", "Content-Type": "application/json"}
        async with self._limit:
            try:
                async with self._http().post(url, data=msgspec.json.encode(body), headers=headers) as response:
                    answer = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The request may have reached Meta before the connection broke; the Cloud API has no
                # idempotency key, so a retry risks a duplicate, which beats losing the message.
                detail = f"WhatsApp unreachable: {exc!r}"
                return _verdict_result(_TRANSIENT, detail, tries)
        return answer_to_result(status, answer, tries)

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
