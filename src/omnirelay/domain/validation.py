"""Rules a send request must meet beyond its types, and the accepted form it is turned into.

Everything here is pure: a request, its scenario's flow and the clock go in; either a dict of
``validationErrors`` (field path -> messages) or the :class:`Accepted` plan comes out.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from omnirelay.domain import smscount
from omnirelay.domain.channels import ADDRESS_FIELDS, CONTENT_FIELDS, NEEDS_SENDER, Channel, parse_channel
from omnirelay.domain.dates import parse_ts
from omnirelay.domain.model import (
    UNIT_SECONDS,
    AdvancedRequest,
    ChannelData,
    Destination,
    ScenarioIn,
    SimpleRequest,
    SmsData,
    Step,
    TimeUnit,
    To,
    WhatsAppData,
)
from omnirelay.domain.request import PlannedStep

MAX_DESTINATIONS = 10_000
MAX_VALIDITY_S = 48 * 3600
MAX_VIBER_VALIDITY_S = 14 * 86400
MAX_SEND_AHEAD_S = 180 * 86400
WHATSAPP_TEXT_MAX = 4096
PUSH_TEXT_MAX = 2000
KAKAO_ALIM_TEXT_MAX = 1000
SMS_TEXT_MAX = 4000

PHONE = re.compile(r"^\+?[0-9]{3,20}$")
PHONE_FORMAT = "must be a phone number in international format, e.g. 41793026727"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
URL = re.compile(r"^https?://[^\s]+$", re.IGNORECASE)
NOTIFY_CONTENT_TYPES = ("application/json", "application/xml")
VIBER_FILE_TYPES = frozenset(
    [
        "doc",
        "docx",
        "rtf",
        "dot",
        "dotx",
        "odt",
        "odf",
        "fodt",
        "txt",
        "info",
        "pdf",
        "xps",
        "pdax",
        "eps",
        "xls",
        "xlsx",
        "ods",
        "fods",
        "csv",
        "xlsm",
        "xltx",
    ]
)

Errors = dict[str, list[str]]


class Limits(msgspec.Struct, frozen=True):
    """Configurable bounds of validation."""

    min_validity_seconds: float = 30.0
    max_destinations: int = MAX_DESTINATIONS


def _add(errors: Errors, path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


# --- scenarios ---------------------------------------------------------------------------------


def validate_scenario(body: ScenarioIn) -> tuple[Errors, list[Step]]:
    """Check a scenario's flow; returns the errors and the flow with channel aliases resolved."""
    errors: Errors = {}
    flow: list[Step] = []
    seen: set[Channel] = set()
    for i, step in enumerate(body.flow):
        channel = parse_channel(step.channel.value)
        if channel in seen:
            _add(errors, f"flow[{i}].channel", f"channel {channel.value} appears more than once")
        seen.add(channel)
        sender = step.from_.strip() if step.from_ else None
        if channel in NEEDS_SENDER and not sender:
            _add(errors, f"flow[{i}].from", f"a {channel.value} step needs a sender")
        if channel is Channel.EMAIL and sender and not EMAIL.match(sender):
            _add(errors, f"flow[{i}].from", "must be an e-mail address")
        flow.append(Step(channel=channel.value, from_=sender))
    if body.name is not None and len(body.name) > 200:
        _add(errors, "name", "must be at most 200 characters")
    return errors, flow


# --- sending -----------------------------------------------------------------------------------


class Rejection(msgspec.Struct, frozen=True, gc=False):
    """Why one destination of a request is refused while the others are sent: Infobip's status (group REJECTED)
    and error names, and what was wrong, for the message's history."""

    status: str
    error: str
    reason: str


class AcceptedDestination(msgspec.Struct, gc=False):
    """One destination of a valid request, to be sent or, with ``rejected``, stored as refused (a struct
    without GC tracking: made by the thousand)."""

    message_id: str | None
    to: To
    to_json: bytes
    content_hash: bytes
    """Fingerprint of the destination with the request's content, for idempotent client message ids (else empty)."""
    address: str | None = None
    """The key of the destination's capability memory, as :func:`capability_key` gives it."""
    rejected: Rejection | None = None
    """Why this destination is refused; None when it is sent."""
    duplicate: bool = False
    """Its client message id was used by an earlier destination of the same request: it is answered, not stored
    (the id names that earlier message)."""


@dataclass
class Accepted:
    """A send request that passed validation, ready to be stored."""

    destinations: list[AcceptedDestination]
    steps: list[PlannedStep]
    content: dict[str, Any]
    options: dict[str, Any]
    bulk_id: str | None
    send_at: float | None
    payload: bytes = field(default=b"")
    fresh: int = 0
    """How many destinations have no client message id (each needs a new one)."""
    rejected: int = 0
    """How many destinations are refused (each answered with its own status; see :class:`Rejection`)."""


def validity_seconds(channel: Channel, data: ChannelData | None, limits: Limits) -> float:
    """The step's validity period in seconds, clamped to what the channel supports."""
    ceiling = MAX_VIBER_VALIDITY_S if channel is Channel.VIBER else MAX_VALIDITY_S
    if data is None or data.validityPeriod is None:
        return float(ceiling if channel is not Channel.VIBER else MAX_VALIDITY_S)
    unit = data.validityPeriodTimeUnit or TimeUnit.MINUTES
    seconds = data.validityPeriod * UNIT_SECONDS[unit]
    floor = limits.min_validity_seconds
    if channel is Channel.VIBER:
        floor = max(floor, 35.0) if floor >= 30.0 else floor
    return float(min(max(seconds, floor), ceiling))


def address_for(channel: Channel, to: To) -> str | None:
    """The destination's address for a channel (a phone number without ``+``), or None when it has none."""
    for name in ADDRESS_FIELDS[channel]:
        value = getattr(to, name)
        if value:
            return str(value).lstrip("+") if name == "phoneNumber" else str(value)
    return None


def main_address(to: To) -> str | None:
    """The destination's main address: its phone number without ``+``, else the first address it has."""
    if to.phoneNumber:
        return to.phoneNumber.lstrip("+")
    for value in (to.whatsAppUserId, to.emailAddress, to.pushRegistrationId, to.lineUserKey, to.facebookUserKey):
        if value:
            return value
    return None


def capability_key(to: To) -> str | None:
    """The address a destination's capability memory is kept under (``messages.address``): its main address.

    Whatever writes or reads that memory (acceptance, the engine's ``Remember``) takes the key from here, so they
    always agree.
    """
    return main_address(to)


def _check_whatsapp(errors: Errors, wa: WhatsAppData) -> None:
    if wa.text is not None and len(wa.text) > WHATSAPP_TEXT_MAX:
        _add(errors, "whatsApp.text", f"must be at most {WHATSAPP_TEXT_MAX} characters")
    # A template needs its name and language (the Cloud API sends none without its language code) and no
    # namespace (the Cloud API has none); templateData and mediaTemplateData are optional; Infobip's document
    # requires a media template's body and its placeholders (an empty list for none).
    if wa.templateName is not None or wa.templateData is not None or wa.mediaTemplateData is not None:
        for name in ("templateName", "language"):
            if not getattr(wa, name):
                _add(errors, f"whatsApp.{name}", "is required for a template message")
    media = wa.mediaTemplateData
    if media is not None:
        if media.body is None:
            _add(errors, "whatsApp.mediaTemplateData.body", "is required (with placeholders, [] for none)")
        elif media.body.placeholders is None:
            _add(errors, "whatsApp.mediaTemplateData.body.placeholders", "is required ([] for none)")
        elif not all(media.body.placeholders):
            _add(errors, "whatsApp.mediaTemplateData.body.placeholders", "must not contain empty values")
    if wa.policy is not None and wa.policy.lower() not in ("deterministic", "fallback"):
        _add(errors, "whatsApp.policy", "must be deterministic or fallback")
    if (wa.latitude is None) != (wa.longitude is None):
        missing = "latitude" if wa.latitude is None else "longitude"
        _add(errors, f"whatsApp.{missing}", "a location message needs both latitude and longitude")
    for name in ("imageUrl", "fileUrl", "audioUrl", "videoUrl"):
        value = getattr(wa, name)
        if value is not None and not URL.match(value):
            _add(errors, f"whatsApp.{name}", "must be an http(s) URL")
    has_content = any(
        (
            wa.text,
            wa.templateName,
            wa.imageUrl,
            wa.fileUrl,
            wa.audioUrl,
            wa.videoUrl,
            wa.latitude is not None,
            wa.contacts,
            wa.mediaTemplateData,
        )
    )
    if not has_content:
        _add(
            errors,
            "whatsApp",
            "needs text, a media URL (imageUrl for an image message), a location, contacts or a template",
        )


def _check_sms(errors: Errors, sms: SmsData) -> None:
    """Infobip refuses an SMS of more than 25 parts (``REJECTED_MESSAGE_TOO_LONG``); its text is the same for
    every destination, so here the request is refused."""
    text = sms.text or ""
    if len(text) <= smscount.SURELY_FITS:
        return
    parts = smscount.sms_parts(msgspec.to_builtins(sms)) if len(text) <= SMS_TEXT_MAX else None
    if parts is None or parts > smscount.MAX_PARTS:
        needs = f"this text needs {parts}" if parts is not None else f"this text has {len(text)} characters"
        _add(
            errors,
            "sms.text",
            f"must fit in {smscount.MAX_PARTS} SMS parts and {SMS_TEXT_MAX} characters (25 parts hold 3825 GSM-7"
            f" or 1675 UCS-2 characters): {needs}",
        )


def _check_content(errors: Errors, req: AdvancedRequest) -> None:
    if req.whatsApp is not None:
        _check_whatsapp(errors, req.whatsApp)
    if req.push is not None and req.push.text is not None and len(req.push.text) > PUSH_TEXT_MAX:
        _add(errors, "push.text", f"must be at most {PUSH_TEXT_MAX} characters")
    if req.kakaoAlim is not None and req.kakaoAlim.text is not None and len(req.kakaoAlim.text) > KAKAO_ALIM_TEXT_MAX:
        _add(errors, "kakaoAlim.text", f"must be at most {KAKAO_ALIM_TEXT_MAX} characters")
    if req.viber is not None:
        v = req.viber
        if v.fileType is not None and v.fileType.lower() not in VIBER_FILE_TYPES:
            _add(errors, "viber.fileType", "is not a supported file type")
        if v.fileUrl is not None and not URL.match(v.fileUrl):
            _add(errors, "viber.fileUrl", "must be an http(s) URL")
        if v.buttonText is not None and v.buttonURL is None:
            _add(errors, "viber.buttonURL", "is required with buttonText")
    if req.sms is not None and req.sms.text:
        _check_sms(errors, req.sms)
    for name in ("sms", "email", "voice"):
        data = getattr(req, name)
        if data is not None and data.text is not None and data.text == "":
            _add(errors, f"{name}.text", "must not be empty")


_NOT_CONTENT = frozenset({"validityPeriod", "validityPeriodTimeUnit"})
_EMPTY: tuple[object, ...] = ("", [], {})


def has_content(data: dict[str, Any] | None) -> bool:
    """Whether a channel object (as builtins) carries something to send, not only a validity period."""
    if data is None:
        return False
    for k, v in data.items():  # noqa: SIM110 - any() over a generator took 3 times as long
        if v not in _EMPTY and k not in _NOT_CONTENT:
            return True
    return False


def simple_to_advanced(req: SimpleRequest, flow: list[Step]) -> AdvancedRequest:
    """The legacy ``/omni/1/text`` request as an advanced one: its text goes to each channel of the scenario."""
    content: dict[str, Any] = {}
    if req.text is not None:
        for step in flow:
            channel = parse_channel(step.channel)
            data: dict[str, Any] = {"text": req.text}
            if channel is Channel.EMAIL and req.mailSubject:
                data["subject"] = req.mailSubject
            content[CONTENT_FIELDS[channel]] = data
    body = {"scenarioKey": req.scenarioKey, "bulkId": req.bulkId, **content}
    # the destinations were checked as the same type when the request was decoded: taken as they are, not copied
    return msgspec.structs.replace(msgspec.convert(body, AdvancedRequest), destinations=req.destinations)


#: :func:`parse_channel` remembered for the few names stored flows use (an enum look-up per step costs more).
_channel_of = functools.cache(parse_channel)


def prepare_send(req: AdvancedRequest, flow: list[Step], now: float, limits: Limits) -> Errors | Accepted:
    """Validate a send request against its scenario's flow; the errors, or the accepted plan."""
    errors: Errors = {}
    destinations: list[Destination] = req.destinations or []
    if not destinations:
        _add(errors, "destinations", "must contain at least one destination")
    elif len(destinations) > limits.max_destinations:
        _add(errors, "destinations", f"must contain at most {limits.max_destinations} destinations")

    send_at: float | None = None
    if req.sendAt is not None:
        try:
            send_at = parse_ts(req.sendAt)
        except ValueError as exc:
            _add(errors, "sendAt", str(exc))
        else:
            if send_at - now >= MAX_SEND_AHEAD_S:
                _add(errors, "sendAt", "must be less than 180 days ahead")
            elif send_at <= now:
                send_at = None
    if req.notifyUrl is not None and not URL.match(req.notifyUrl):
        _add(errors, "notifyUrl", "must be an http(s) URL")
    if req.notifyContentType is not None and req.notifyContentType not in NOTIFY_CONTENT_TYPES:
        _add(errors, "notifyContentType", "must be application/json or application/xml")
    channels = [_channel_of(s.channel) for s in flow]
    _check_content(errors, req)
    data: list[ChannelData | None] = [getattr(req, CONTENT_FIELDS[c]) for c in channels]
    steps = [
        PlannedStep(c.value, s.from_, validity_seconds(c, d, limits))
        for c, s, d in zip(channels, flow, data, strict=True)
    ]
    content = {CONTENT_FIELDS[c]: msgspec.to_builtins(d) for c, d in zip(channels, data, strict=True) if d is not None}
    with_content = [c for c in channels if has_content(content.get(CONTENT_FIELDS[c]))]
    if flow and not with_content:
        names = ", ".join(CONTENT_FIELDS[c] for c in channels)
        _add(errors, CONTENT_FIELDS[channels[0]], f"the scenario's channels need content: give one of {names}")
    options = {
        k: v
        for k, v in (
            ("notify", req.notify),
            ("intermediateReport", req.intermediateReport),
            ("notifyUrl", req.notifyUrl),
            ("notifyContentType", req.notifyContentType),
            ("callbackData", req.callbackData),
        )
        if v is not None
    }
    payload = msgspec.json.encode({"steps": steps, "content": content, "options": options})
    if errors:
        return errors
    shared = payload + (req.sendAt or "").encode()
    accepted, supplied, rejected = _check_destinations(destinations, with_content, shared)
    return Accepted(accepted, steps, content, options, req.bulkId, send_at, payload, len(accepted) - supplied, rejected)


_to_encoder = msgspec.json.Encoder()
_NO_TO = To()

#: Infobip's statuses for a refused destination, with the error that goes with each.
MISSING_TO = ("MISSING_TO", "EC_INVALID_DESTINATION_ADDRESS")
BAD_DESTINATION = ("REJECTED_DESTINATION", "EC_INVALID_DESTINATION_ADDRESS")
BAD_EMAIL = ("REJECTED_DESTINATION", "EC_INVALID_EMAIL_ADDRESS")
PREFIX_MISSING = ("REJECTED_PREFIX_MISSING", "EC_INVALID_REQUEST_DESTINATION")
DUPLICATE_ID = ("REJECTED_DUPLICATE_MESSAGE_ID", "EC_DUPLICATE_REQUEST")


def _rejection(kind: tuple[str, str], path: str, message: str) -> Rejection:
    return Rejection(kind[0], kind[1], f"{path} {message}")


def _check_destinations(
    destinations: list[Destination], with_content: list[Channel], shared_content: bytes
) -> tuple[list[AcceptedDestination], int, int]:
    """Check each destination; all of them in order (a bad one marked with its :class:`Rejection`), how many
    carry a client message id, and how many are rejected.

    A problem of one destination never fails the request: Infobip sends the others and answers the bad one with
    its own status. This loop runs for every destination of a request (up to 10,000), so it does per
    destination only what depends on the destination, and builds a field path only for a rejection.
    """
    # A destination is usable when it has any address that some channel with content needs: what
    # ``address_for(channel, to) is not None`` says for one of those channels.
    needed = tuple(dict.fromkeys(name for c in with_content for name in ADDRESS_FIELDS[c]))
    phone_ok, email_ok, encode = PHONE.match, EMAIL.match, _to_encoder.encode
    shared: bytes | None = None
    accepted: list[AcceptedDestination] = []
    seen_ids: set[str] = set()
    supplied = rejected = 0
    for i, dest in enumerate(destinations):
        to = dest.to
        phone = None if to is None else to.phoneNumber
        rejection: Rejection | None = None
        if to is None:
            to = _NO_TO
            rejection = _rejection(MISSING_TO, f"destinations[{i}].to", "is required")
        elif phone is not None and not phone_ok(phone):
            rejection = _rejection(BAD_DESTINATION, f"destinations[{i}].to.phoneNumber", PHONE_FORMAT)
        elif phone is not None and (phone[1] if phone[0] == "+" else phone[0]) == "0":  # the regex: 3+ characters
            rejection = _rejection(
                PREFIX_MISSING, f"destinations[{i}].to.phoneNumber", "must start with the country code, not 0"
            )
        elif to.emailAddress is not None and not email_ok(to.emailAddress):
            rejection = _rejection(BAD_EMAIL, f"destinations[{i}].to.emailAddress", "must be an e-mail address")
        elif needed:
            for name in needed:
                if getattr(to, name):
                    break
            else:
                rejection = _rejection(
                    MISSING_TO,
                    f"destinations[{i}].to",
                    f"needs an address for the scenario's channels: one of {', '.join(sorted(needed))}",
                )
        message_id = dest.messageId
        to_json = encode(to)
        digest = b""
        duplicate = False
        if message_id is not None:
            supplied += 1
            if message_id in seen_ids:
                duplicate = True
                rejection = _rejection(
                    DUPLICATE_ID, f"destinations[{i}].messageId", "appears more than once in this request"
                )
            seen_ids.add(message_id)
            # only a client-supplied message id can be sent again, so only its content needs a fingerprint
            if shared is None:
                shared = hashlib.blake2b(shared_content, digest_size=16).digest()
            digest = hashlib.blake2b(shared + to_json, digest_size=16).digest()
        address = capability_key(to)
        if rejection is None:
            accepted.append(AcceptedDestination(message_id, to, to_json, digest, address))
        else:
            rejected += 1
            accepted.append(AcceptedDestination(message_id, to, to_json, digest, address, rejection, duplicate))
    return accepted, supplied, rejected
