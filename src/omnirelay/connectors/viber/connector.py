"""Viber over Viber's REST bot API: ``POST {base_url}/pa/send_message`` with the ``X-Viber-Auth-Token`` header.

A step's ``from`` picks one of the configured bots. The bot API addresses a user by the Viber user id its
callbacks name, not by phone number, so the destination's ``phoneNumber`` is looked up in the bot's ``users``
map (and ``users_file``); a number the map does not hold is refused at once, which fails over. The OMNI
``viber`` object becomes one bot API message (:func:`build_message`): a text, a picture, or a rich media card
when it has a button. Viber answers every request with HTTP 200 and a ``status`` code: 0 gives the message's
``message_token`` (the provider id), the others map to outcomes with :func:`classify`. The outcome comes later
by callback (:mod:`omnirelay.connectors.viber.webhooks`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from omnirelay.config import ViberBotConfig, ViberConfig
from omnirelay.connectors.base import LaterReport, SubmitResult
from omnirelay.connectors.counters import CounterSpec
from omnirelay.connectors.http import (
    ACCOUNT,
    BAD_REQUEST,
    THROTTLED,
    TRANSIENT,
    ContentError,
    HttpConnector,
    Refused,
    Verdict,
    verdict_result,
)
from omnirelay.domain.delivery import Submission
from omnirelay.domain.lifecycle import Outcome
from omnirelay.domain.model import ViberData

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.viber")

AUTH_HEADER = "X-Viber-Auth-Token"
TEXT_MAX = 7000
"""Viber's limit on a text message."""
PICTURE_TEXT_MAX = 768
"""Viber's limit on a picture's description."""
RICH_TEXT_MAX = 250
"""Viber's limit on the text of one rich media button."""
SENDER_NAME_MAX = 28
RICH_MEDIA_API_VERSION = 2
"""Rich media messages need clients of bot API version 2 or later (``min_api_version``)."""


# --- OMNI viber object -> bot API message ---------------------------------------------------------------


def _rich_media(data: ViberData) -> dict[str, Any]:
    """A rich media card: the image (opening the button's URL), the text, and the button, one under another."""
    assert data.buttonText is not None and data.buttonURL is not None
    buttons: list[dict[str, Any]] = []
    if data.imageURL:
        buttons.append(
            {
                "Columns": 6,
                "Rows": 4,
                "ActionType": "open-url",
                "ActionBody": data.buttonURL,
                "Image": data.imageURL,
            }
        )
    if data.text:
        if len(data.text) > RICH_TEXT_MAX:
            raise ContentError(f"viber.text must be at most {RICH_TEXT_MAX} characters with a button")
        buttons.append({"Columns": 6, "Rows": 2, "ActionType": "none", "Text": data.text, "TextHAlign": "left"})
    buttons.append(
        {
            "Columns": 6,
            "Rows": 1,
            "ActionType": "open-url",
            "ActionBody": data.buttonURL,
            "Text": data.buttonText,
            "TextSize": "large",
        }
    )
    return {
        "Type": "rich_media",
        "ButtonsGroupColumns": 6,
        "ButtonsGroupRows": sum(b["Rows"] for b in buttons),
        "Buttons": buttons,
    }


def build_message(receiver: str, bot: ViberBotConfig, viber: dict[str, Any] | ViberData) -> dict[str, Any]:
    """The ``send_message`` body for an OMNI ``viber`` object sent to the Viber user ``receiver``.

    With ``buttonText`` and ``buttonURL`` it is a ``rich_media`` card (image, text, button); else with
    ``imageURL`` a ``picture`` (``text`` its description); else a ``text``. ``trackingData`` becomes
    ``tracking_data``. Raises :class:`ContentError` when nothing can be sent or a part is missing.
    """
    try:
        data = viber if isinstance(viber, ViberData) else msgspec.convert(viber, ViberData)
    except msgspec.ValidationError as exc:
        raise ContentError(f"viber: {exc}") from None
    sender: dict[str, Any] = {"name": bot.sender_name}
    if bot.avatar:
        sender["avatar"] = bot.avatar
    body: dict[str, Any] = {"receiver": receiver, "sender": sender}
    if data.trackingData:
        body["tracking_data"] = data.trackingData
    if bool(data.buttonText) != bool(data.buttonURL):
        raise ContentError("viber: buttonText and buttonURL go together (give both or neither)")
    if data.fileUrl:
        # a bot API file message must give the file's size, which the OMNI object does not carry
        raise ContentError("viber: fileUrl is not supported by the Viber bot API connector")
    if data.buttonText:
        body["type"] = "rich_media"
        body["min_api_version"] = RICH_MEDIA_API_VERSION
        body["rich_media"] = _rich_media(data)
        if data.text:
            body["alt_text"] = data.text  # what clients that cannot show the card display
    elif data.imageURL:
        text = data.text or ""
        if len(text) > PICTURE_TEXT_MAX:
            raise ContentError(f"viber.text must be at most {PICTURE_TEXT_MAX} characters with an image")
        body["type"] = "picture"
        body["text"] = text
        body["media"] = data.imageURL
    elif data.text:
        if len(data.text) > TEXT_MAX:
            raise ContentError(f"viber.text must be at most {TEXT_MAX} characters")
        body["type"] = "text"
        body["text"] = data.text
    else:
        raise ContentError("viber: nothing to send (give text, imageURL, or buttonText with buttonURL)")
    return body


# --- Viber status codes -> outcomes ---------------------------------------------------------------------


_BILLING = Verdict(Outcome.REJECTED, "EC_PROVIDER_BILLING_ERROR")
_VERSION = Verdict(Outcome.UNDELIVERABLE, "EC_UNSUPPORTED_MOBILE_APP_VERSION")

#: The ``status`` codes of the REST bot API (its "Error codes" table), by number, with Viber's names.
STATUS_NAMES: dict[int, str] = {
    0: "ok",
    1: "invalidUrl",
    2: "invalidAuthToken",
    3: "badData",
    4: "missingData",
    5: "receiverNotRegistered",
    6: "receiverNotSubscribed",
    7: "publicAccountBlocked",
    8: "publicAccountNotFound",
    9: "publicAccountSuspended",
    10: "webhookNotSet",
    11: "receiverNoSuitableDevice",
    12: "tooManyRequests",
    13: "apiVersionNotSupported",
    14: "incompatibleWithVersion",
    15: "publicAccountNotAuthorized",
    16: "inchatReplyMessageNotAllowed",
    17: "publicAccountIsNotInline",
    18: "noPublicChat",
    19: "cannotSendBroadcast",
    20: "broadcastNotAllowed",
    21: "unsupportedCountry",
    22: "paymentUnsupported",
    23: "freeMessagesExceeded",
    24: "noBalance",
}

VERDICTS: dict[int, Verdict] = {
    1: BAD_REQUEST,
    2: Verdict(Outcome.REJECTED, "EC_UNAUTHORIZED_ACCESS"),
    3: BAD_REQUEST,
    4: BAD_REQUEST,
    # not a Viber user: fails over at once, and the number is remembered as not a user
    5: Verdict(Outcome.REJECTED, "EC_UNKNOWN_USER", not_a_user=True),
    # a Viber user who has not subscribed to the bot (or left it): fails over at once, but is not remembered,
    # since subscribing again makes them reachable
    6: Verdict(Outcome.REJECTED, "EC_UNKNOWN_USER"),
    7: ACCOUNT,
    8: ACCOUNT,
    9: ACCOUNT,
    10: Verdict(Outcome.REJECTED, "EC_CONFIGURATION_ERROR"),  # Viber takes no sends before set_webhook
    11: Verdict(Outcome.UNDELIVERABLE, "EC_UNSUPPORTED_DEVICE"),
    12: THROTTLED,
    13: _VERSION,
    14: _VERSION,
    15: Verdict(Outcome.REJECTED, "EC_FORBIDDEN_ACCESS"),
    16: BAD_REQUEST,
    17: BAD_REQUEST,
    18: BAD_REQUEST,
    19: BAD_REQUEST,
    20: BAD_REQUEST,
    21: Verdict(Outcome.REJECTED, "EC_ILLEGAL_TRAFFIC_TYPE"),
    22: _BILLING,
    23: _BILLING,
    24: _BILLING,
}
_GENERAL = Verdict(Outcome.UNDELIVERABLE, "EC_PROVIDER_DR_ERROR")
"""Any other code: Viber's "general error"."""


def classify(status: int) -> Verdict:
    """The verdict for a nonzero bot API ``status`` code."""
    return VERDICTS.get(status, _GENERAL)


def describe_status(status: int, message: str | None) -> str:
    """A ``detail`` text naming the Viber status: ``Viber status 6 (receiverNotSubscribed): …``."""
    head = f"Viber status {status} ({STATUS_NAMES.get(status, 'generalError')})"
    return f"{head}: {message}" if message and message != STATUS_NAMES.get(status) else head


class _ViberSendAnswer(msgspec.Struct):
    status: int | None = None
    status_message: str | None = None
    message_token: int | str | None = None


_answer_decoder = msgspec.json.Decoder(_ViberSendAnswer)


def answer_to_result(http_status: int, body: bytes, tries: int = 1) -> SubmitResult:
    """What a ``send_message`` answer means: the ``message_token`` of status 0, else an outcome with the
    status code in its ``detail`` (throttling and server trouble ask to submit again after a backoff)."""
    answer: _ViberSendAnswer | None
    try:
        answer = _answer_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        answer = None
    if http_status != 200 or answer is None or answer.status is None:
        text = body[:300].decode("utf-8", "replace")
        if http_status >= 500 or http_status == 429 or http_status == 200:
            return verdict_result(TRANSIENT, f"Viber answered HTTP {http_status}: {text}", tries)
        return verdict_result(BAD_REQUEST, f"Viber answered HTTP {http_status}: {text}", tries)
    if answer.status == 0:
        if answer.message_token is not None and str(answer.message_token):
            return SubmitResult(str(answer.message_token))
        detail = f"Viber answered status 0 without a message_token: {body[:300].decode('utf-8', 'replace')}"
        return SubmitResult(None, [LaterReport(0.0, Outcome.REJECTED, "EC_PROVIDER_INTERNAL_ERROR", detail=detail)])
    return verdict_result(classify(answer.status), describe_status(answer.status, answer.status_message), tries)


def load_users(bot: ViberBotConfig) -> dict[str, str]:
    """The bot's phone number -> Viber user id map: ``users_file`` (a JSON object), then ``users`` over it.

    Numbers are kept as international digits (a leading ``+`` is dropped), as destinations are.
    """
    users: dict[str, str] = {}
    if bot.users_file:
        raw = json.loads(Path(bot.users_file).read_text())
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise ValueError(f"{bot.users_file}: must be a JSON object of phone number -> Viber user id")
        users.update({str(k).lstrip("+"): v for k, v in raw.items()})
    users.update({k.lstrip("+"): v for k, v in bot.users.items()})
    return users


# --- the connector -------------------------------------------------------------------------------------

SENDS = CounterSpec(
    "omnirelay_viber_sends",
    "Viber bot API sends by sender and result (accepted, or the outcome of a refusal)",
    ("sender", "result"),
)


class ViberBot(HttpConnector[ViberBotConfig]):
    """A :class:`~omnirelay.connectors.base.Connector` for VIBER steps through Viber's REST bot API."""

    provider = "Viber"
    sender_kind = "Viber bot"
    sends = SENDS
    user_agent: ClassVar[str | None] = None

    def __init__(self, config: ViberConfig, metrics: Metrics | None = None) -> None:
        for b in config.bots:
            if not 0 < len(b.sender_name) <= SENDER_NAME_MAX:
                raise ValueError(f"bot {b.sender!r}: sender_name must be 1 to {SENDER_NAME_MAX} characters")
        super().__init__({b.sender: b for b in config.bots}, metrics)
        self.users: dict[str, dict[str, str]] = {b.sender: load_users(b) for b in config.bots}

    def prepare(self, sub: Submission, sender: ViberBotConfig) -> dict[str, Any]:
        receiver = self.users[sender.sender].get(sub.address)
        if receiver is None:
            detail = f"no Viber user id is known for {sub.address} (bot {sender.sender}'s users map)"
            raise Refused("EC_UNKNOWN_USER", detail)
        try:
            return build_message(receiver, sender, sub.content.get("viber") or {})
        except ContentError as exc:
            raise Refused("EC_BAD_REQUEST", str(exc)) from None

    async def send(self, sender: ViberBotConfig, sub: Submission, body: dict[str, Any]) -> SubmitResult:
        url = f"{sender.base_url.rstrip('/')}/pa/send_message"
        answer = await self.post_json(url, body, {AUTH_HEADER: sender.auth_token})
        return answer_to_result(answer.status, answer.body, sub.tries)
