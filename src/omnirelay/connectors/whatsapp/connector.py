"""WhatsApp over Meta's Cloud API: ``POST {base_url}/{api_version}/{phone_number_id}/messages``.

A step's ``from`` picks one of the configured senders (a WhatsApp Business phone number). The OMNI
``whatsApp`` object becomes one Cloud API message (:func:`build_message`); a 200 answer gives the message's
wamid, and the outcome comes later by status webhook (:mod:`omnirelay.connectors.whatsapp.webhooks`). Graph errors,
whether answered at once or reported by a ``failed`` status, map to outcomes with :func:`classify`.
"""

from __future__ import annotations

import logging
import posixpath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from omnirelay.config import WhatsAppConfig, WhatsAppSenderConfig
from omnirelay.connectors.base import LaterReport, SubmitResult
from omnirelay.connectors.counters import CounterSpec
from omnirelay.connectors.http import (
    ACCOUNT,
    BAD_REQUEST,
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
from omnirelay.domain.model import MediaTemplateData, WhatsAppContact, WhatsAppData

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.whatsapp")

WEBHOOK_RETRY_S = 1.0
"""Wait before submitting again after a throttling ``failed`` status (a webhook does not say how often we tried)."""


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


_TEMPLATE = Verdict(Outcome.REJECTED, "EC_INVALID_TEMPLATE")
_TEMPLATE_ARGS = Verdict(Outcome.REJECTED, "EC_INVALID_TEMPLATE_ARGS")
_AUTH = Verdict(Outcome.REJECTED, "EC_UNAUTHORIZED_ACCESS")

#: Meta's error codes (developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
VERDICTS: dict[int, Verdict] = {
    131026: NOT_A_USER,  # message undeliverable: not a WhatsApp user, old client, terms not accepted
    131047: Verdict(Outcome.REJECTED, "EC_NO_SESSION"),  # 24-hour window closed: only templates may be sent
    131049: Verdict(Outcome.UNDELIVERABLE, "EC_FREQUENCY_CAPPING"),  # per-user marketing limit ("healthy ecosystem")
    131048: Verdict(Outcome.UNDELIVERABLE, "EC_SPAM_RATE"),  # spam rate limit (the number's quality)
    131050: Verdict(Outcome.REJECTED, "EC_MARKETING_OPT_OUT"),  # the user stopped marketing messages
    130429: THROTTLED,  # Cloud API throughput reached
    131056: THROTTLED,  # (business, consumer) pair rate limit
    4: THROTTLED,  # application request limit
    80007: THROTTLED,  # WhatsApp Business Account rate limit
    133016: THROTTLED,  # registration rate limit
    1: TRANSIENT,  # unknown API error
    2: TRANSIENT,  # temporary service error
    131000: TRANSIENT,  # something went wrong
    131016: TRANSIENT,  # service unavailable
    131057: TRANSIENT,  # account in maintenance mode
    133004: TRANSIENT,  # server temporarily unavailable
    132000: _TEMPLATE_ARGS,  # parameter count mismatch
    132012: _TEMPLATE_ARGS,  # parameter format mismatch
    132001: _TEMPLATE,  # template does not exist (name or language)
    132005: _TEMPLATE,  # hydrated text too long
    132007: _TEMPLATE,  # format character policy violated
    132015: _TEMPLATE,  # template paused
    132016: _TEMPLATE,  # template disabled
    132068: _TEMPLATE,  # flow is blocked
    132069: _TEMPLATE,  # flow is throttled
    131051: Verdict(Outcome.REJECTED, "EC_MEDIA_UNSUPPORTED"),  # unsupported message type
    131052: Verdict(Outcome.REJECTED, "EC_MEDIA_HOSTING_ERROR"),  # media download error (the link)
    131053: Verdict(Outcome.REJECTED, "EC_MEDIA_UPLOAD_ERROR"),  # media upload error
    131008: BAD_REQUEST,  # required parameter missing
    131009: BAD_REQUEST,  # parameter value not valid
    131021: BAD_REQUEST,  # recipient cannot be the sender
    100: BAD_REQUEST,  # invalid parameter
    135000: BAD_REQUEST,  # generic user error
    131042: ACCOUNT,  # payment problem
    131031: ACCOUNT,  # account locked
    131045: ACCOUNT,  # incorrect certificate
    133010: ACCOUNT,  # phone number not registered
    368: ACCOUNT,  # temporarily blocked for policy violations
    0: _AUTH,  # AuthException
    3: _AUTH,  # capability
    10: _AUTH,  # permission denied
    190: _AUTH,  # access token expired
}
_UNKNOWN = Verdict(Outcome.UNDELIVERABLE, "EC_PROVIDER_DR_ERROR")


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


def describe_error(code: int | None, title: str | None, message: str | None, details: str | None) -> str:
    """A ``detail`` text naming the WhatsApp error: ``WhatsApp error 131026 (Message undeliverable): …``."""
    head = f"WhatsApp error {code}" if code is not None else "WhatsApp error"
    if title:
        head += f" ({title})"
    parts = [p for p in (message, details) if p and p != title]
    return f"{head}: {' - '.join(parts)}" if parts else head


class _SentMessage(msgspec.Struct):
    id: str | None = None


class _WhatsAppSendAnswer(msgspec.Struct):
    messages: list[_SentMessage] = msgspec.field(default_factory=list)


_error_decoder = msgspec.json.Decoder(GraphErrorBody)
_answer_decoder = msgspec.json.Decoder(_WhatsAppSendAnswer)


def answer_to_result(status: int, body: bytes, tries: int = 1) -> SubmitResult:
    """What a Cloud API answer to a send means: the wamid of a 200, else an outcome with the Graph code in
    its ``detail`` (a throttled or failing server asks to submit again after a backoff)."""
    if status == 200:
        try:
            answer = _answer_decoder.decode(body)
        except msgspec.DecodeError:
            answer = _WhatsAppSendAnswer()
        wamid = answer.messages[0].id if answer.messages else None
        if wamid:
            return SubmitResult(wamid)
        detail = f"WhatsApp answered 200 without a message id: {body[:300].decode('utf-8', 'replace')}"
        return SubmitResult(None, [LaterReport(0.0, Outcome.REJECTED, "EC_PROVIDER_INTERNAL_ERROR", detail=detail)])
    try:
        graph: GraphError | None = _error_decoder.decode(body).error
    except msgspec.DecodeError:
        graph = None
    if graph is not None and graph.code is not None:
        verdict = classify(graph.code)
        if verdict is _UNKNOWN:  # an answer, not a failed delivery: decide by the HTTP status
            verdict = TRANSIENT if status >= 500 or status == 429 else BAD_REQUEST
        detail = f"HTTP {status}, " + describe_error(graph.code, graph.error_user_title, graph.message, graph.details)
    else:
        if status >= 500 or status == 429:
            verdict = TRANSIENT
        elif status in (401, 403):
            verdict = _AUTH
        else:
            verdict = BAD_REQUEST
        detail = f"WhatsApp answered HTTP {status}: {body[:500].decode('utf-8', 'replace')}"
    return verdict_result(verdict, detail, tries)


# --- the connector -------------------------------------------------------------------------------------

SENDS = CounterSpec(
    "omnirelay_whatsapp_sends",
    "Cloud API sends by sender and result (accepted, or the outcome of a refusal)",
    ("sender", "result"),
)


class WhatsAppCloud(HttpConnector[WhatsAppSenderConfig]):
    """A :class:`~omnirelay.connectors.base.Connector` for WHATSAPP steps through Meta's Cloud API (whose
    throughput is about 80 messages a second per number)."""

    provider = "WhatsApp"
    sender_kind = "WhatsApp sender"
    sends = SENDS

    def __init__(self, config: WhatsAppConfig, metrics: Metrics | None = None) -> None:
        super().__init__({s.sender: s for s in config.senders}, metrics)

    def sender_for(self, name: str | None) -> WhatsAppSenderConfig | None:
        """The sender a step's ``from`` names (with or without its ``+``); a step without ``from`` uses the
        only sender, if there is one."""
        return super().sender_for(name) or (self.senders.get(name.lstrip("+")) if name else None)

    def prepare(self, sub: Submission, sender: WhatsAppSenderConfig) -> dict[str, Any]:
        try:
            return build_message(sub.address, sub.content.get("whatsApp") or {})
        except ContentError as exc:
            raise Refused("EC_BAD_REQUEST", str(exc)) from None

    async def send(self, sender: WhatsAppSenderConfig, sub: Submission, body: dict[str, Any]) -> SubmitResult:
        url = f"{sender.base_url.rstrip('/')}/{sender.api_version}/{sender.phone_number_id}/messages"
        answer = await self.post_json(url, body, {"Authorization": f"Bearer {sender.access_token}"})
        return answer_to_result(answer.status, answer.body, sub.tries)
