"""Push notifications over Firebase Cloud Messaging HTTP v1:
``POST {base_url}/v1/projects/{project_id}/messages:send``.

A step's ``from`` picks one of the configured apps (a Firebase project and its service account). Access tokens
come from the OAuth2 JWT bearer grant: a JWT signed (RS256) with the service account's private key is traded
at ``token_url`` for a bearer token, kept until a minute before it expires and shared by every send of the
app. The destination's ``pushRegistrationId`` is the device's registration token. The OMNI ``push`` object
becomes one FCM message (:func:`build_message`). FCM tells nothing after it took a message, so its 200 counts
as delivered; its errors map to outcomes with :func:`classify` (``UNREGISTERED`` fails over at once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import jwt
import msgspec

from omnirelay.config import PushAppConfig, PushConfig
from omnirelay.connectors.base import LaterReport, SubmitResult
from omnirelay.connectors.counters import CounterSpec
from omnirelay.connectors.http import (
    RETRY_CAP_S,
    THROTTLED,
    ContentError,
    HttpConnector,
    Refused,
    Unreachable,
    Verdict,
    backoff,
    verdict_result,
)
from omnirelay.domain.delivery import Submission
from omnirelay.domain.lifecycle import Outcome
from omnirelay.domain.model import PushData

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.fcm")

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
ASSERTION_LIFETIME_S = 3600
"""Google takes assertions valid for at most an hour."""
REFRESH_MARGIN_S = 60.0
"""A token is renewed this long before it expires, so that no send carries one that expires on the way."""
TTL_MAX_S = 28 * 86400
"""FCM keeps an undelivered message at most four weeks."""
RESERVED_DATA_KEYS = ("from", "message_type", "notification")
RESERVED_DATA_PREFIXES = ("google", "gcm")


class AuthError(Exception):
    """The service account cannot get an access token; ``verdict`` says whether trying again may help."""

    def __init__(self, verdict: Verdict, detail: str) -> None:
        super().__init__(detail)
        self.verdict = verdict
        self.detail = detail


# --- OMNI push object -> FCM message --------------------------------------------------------------------


def _data_value(value: Any) -> str:
    # FCM data values must be strings: anything else travels as its JSON text
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _option(options: dict[str, Any], name: str, kind: type) -> Any:
    value = options.get(name)
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return value if isinstance(value, kind) and value != "" else None


def build_message(token: str, push: dict[str, Any] | PushData, validity_s: float) -> dict[str, Any]:
    """The ``messages:send`` body for an OMNI ``push`` object sent to the registration token ``token``.

    ``text`` is the notification's body and ``notificationOptions.title`` its title (``contentUrl`` its
    image); ``customPayload`` is the data payload, non-string values as JSON text. Of the other
    ``notificationOptions``: ``soundEnabled`` / ``soundName``, ``vibrationEnabled``, ``badge`` and
    ``category`` go to the Android and APNs options; ``isSilent`` sends no notification, the text and title
    going in the data payload (``body``, ``title``) for the app, with APNs ``content-available``. The step's
    validity is the message's time to live everywhere. Raises :class:`ContentError` when nothing can be sent.
    """
    try:
        data = push if isinstance(push, PushData) else msgspec.convert(push, PushData)
    except msgspec.ValidationError as exc:
        raise ContentError(f"push: {exc}") from None
    options = data.notificationOptions or {}
    silent = _option(options, "isSilent", bool) is True
    message: dict[str, Any] = {"token": token}
    visible: dict[str, str] = {}
    title = _option(options, "title", str)
    if title:
        visible["title"] = title
    if data.text:
        visible["body"] = data.text
    payload: dict[str, str] = {}
    if data.customPayload:
        for key in data.customPayload:
            if key in RESERVED_DATA_KEYS or key.lower().startswith(RESERVED_DATA_PREFIXES):
                raise ContentError(f"push.customPayload: {key!r} is a key FCM reserves")
        payload = {k: _data_value(v) for k, v in data.customPayload.items()}
    if silent:
        payload = {**visible, **payload}
    elif visible:
        image = _option(options, "contentUrl", str)
        message["notification"] = {**visible, "image": image} if image else visible
    if payload:
        message["data"] = payload
    if "notification" not in message and "data" not in message:
        raise ContentError("push: nothing to send (give text, notificationOptions.title or customPayload)")
    ttl = max(0, min(int(validity_s), TTL_MAX_S))
    sound: str | None = None
    if _option(options, "soundEnabled", bool) is not False:
        sound = _option(options, "soundName", str) or ("default" if options.get("soundEnabled") is True else None)
    badge = _option(options, "badge", int)
    category = _option(options, "category", str)
    android: dict[str, Any] = {"ttl": f"{ttl}s"}
    apns_headers = {"apns-expiration": str(int(time.time()) + ttl)}
    aps: dict[str, Any] = {}
    if silent:
        apns_headers.update({"apns-push-type": "background", "apns-priority": "5"})
        aps["content-available"] = 1
    else:
        notification: dict[str, Any] = {}
        if sound:
            notification["sound"] = aps["sound"] = sound
        if _option(options, "vibrationEnabled", bool) is True:
            notification["defaultVibrateTimings"] = True
        if badge is not None:
            notification["notificationCount"] = aps["badge"] = badge
        if category:
            notification["clickAction"] = aps["category"] = category
        if notification:
            android["notification"] = notification
    message["android"] = android
    apns: dict[str, Any] = {"headers": apns_headers}
    if aps:
        apns["payload"] = {"aps": aps}
    message["apns"] = apns
    message["webpush"] = {"headers": {"TTL": str(ttl)}}
    return {"message": message}


# --- FCM errors -> outcomes -----------------------------------------------------------------------------


UNREGISTERED = Verdict(Outcome.REJECTED, "EC_REGISTRATION_ID_DISABLED")
BAD_TOKEN = Verdict(Outcome.REJECTED, "EC_NO_REGISTRATION_ID_FOUND")
BAD_PAYLOAD = Verdict(Outcome.REJECTED, "EC_INVALID_PUSH_PAYLOAD")
AUTH = Verdict(Outcome.REJECTED, "EC_INVALID_FCM_AUTH_DATA")
UNAVAILABLE = Verdict(Outcome.RETRY, "EC_PUSH_CLOUD_TEMP_UNAVAILABLE")
INTERNAL = Verdict(Outcome.RETRY, "EC_PROVIDER_INTERNAL_ERROR")

#: FCM's ``errorCode`` values (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
VERDICTS: dict[str, Verdict] = {
    "UNREGISTERED": UNREGISTERED,  # the app was uninstalled or the token expired: never valid again
    "SENDER_ID_MISMATCH": Verdict(Outcome.REJECTED, "EC_NO_APPLICATION_FOUND"),  # a token of another project
    "INVALID_ARGUMENT": BAD_PAYLOAD,
    "THIRD_PARTY_AUTH_ERROR": Verdict(Outcome.REJECTED, "EC_INVALID_APNS_CERT"),  # APNs / web push credentials
    "QUOTA_EXCEEDED": THROTTLED,
    "UNAVAILABLE": UNAVAILABLE,
    "INTERNAL": INTERNAL,
    "UNSPECIFIED_ERROR": INTERNAL,
}
#: The ``status`` of Google's error envelope, for answers without an FCM ``errorCode``.
STATUS_VERDICTS: dict[str, Verdict] = {
    "NOT_FOUND": UNREGISTERED,
    "INVALID_ARGUMENT": BAD_PAYLOAD,
    "UNAUTHENTICATED": AUTH,
    "PERMISSION_DENIED": AUTH,
    "RESOURCE_EXHAUSTED": THROTTLED,
    "UNAVAILABLE": UNAVAILABLE,
    "INTERNAL": INTERNAL,
}


def classify(http_status: int, error_code: str | None, status: str | None, message: str | None) -> Verdict:
    """The verdict for an FCM error answer: by ``errorCode``, then by Google's ``status``, then by HTTP status."""
    verdict = VERDICTS.get(error_code or "") or STATUS_VERDICTS.get(status or "")
    if verdict is BAD_PAYLOAD and message and "registration token" in message.lower():
        verdict = BAD_TOKEN  # FCM answers a token that is not a token at all with INVALID_ARGUMENT
    if verdict is not None:
        return verdict
    if http_status == 429:
        return THROTTLED
    if http_status in (401, 403):
        return AUTH
    if http_status >= 500:
        return INTERNAL
    return Verdict(Outcome.REJECTED, "EC_BAD_REQUEST")


def retry_after(tries: int, header: str | None = None) -> float:
    """Seconds to wait before submitting again: FCM's ``Retry-After`` when it gives one (seconds), else
    1, 2, 4, … up to :data:`RETRY_CAP_S`."""
    if header:
        try:
            return min(max(float(header), 0.0), RETRY_CAP_S)
        except ValueError:
            pass  # an HTTP date: use the backoff
    return backoff(tries)


class _FcmDetail(msgspec.Struct, rename={"type": "@type"}):
    type: str | None = None
    errorCode: str | None = None


class _GoogleError(msgspec.Struct):
    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: list[_FcmDetail] = msgspec.field(default_factory=list)


class _ErrorBody(msgspec.Struct):
    error: _GoogleError


class _FcmSendAnswer(msgspec.Struct):
    name: str | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)
_answer_decoder = msgspec.json.Decoder(_FcmSendAnswer)


def error_verdict(http_status: int, body: bytes) -> tuple[Verdict, str]:
    """The verdict and a ``detail`` text for an FCM error answer."""
    try:
        error: _GoogleError | None = _error_decoder.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        error = None
    if error is None:
        verdict = classify(http_status, None, None, None)
        return verdict, f"FCM answered HTTP {http_status}: {body[:300].decode('utf-8', 'replace')}"
    code = next((d.errorCode for d in error.details if d.errorCode), None)
    verdict = classify(http_status, code, error.status, error.message)
    head = f"FCM error {code or error.status or http_status}"
    return verdict, f"HTTP {http_status}, {head}: {error.message}" if error.message else f"HTTP {http_status}, {head}"


def answer_to_result(http_status: int, body: bytes, tries: int = 1, retry_header: str | None = None) -> SubmitResult:
    """What a ``messages:send`` answer means: a 200 is delivered (FCM reports nothing later) with the message's
    ``name`` as provider id; an error is an outcome (throttling and server trouble ask to submit again)."""
    if http_status == 200:
        try:
            name = _answer_decoder.decode(body).name
        except (msgspec.DecodeError, msgspec.ValidationError):
            name = None
        if name:
            return SubmitResult(name, [LaterReport(0.0, Outcome.DELIVERED, detail="FCM accepted the message")])
        detail = f"FCM answered 200 without a message name: {body[:300].decode('utf-8', 'replace')}"
        return SubmitResult(None, [LaterReport(0.0, Outcome.REJECTED, "EC_PROVIDER_INTERNAL_ERROR", detail=detail)])
    verdict, detail = error_verdict(http_status, body)
    return verdict_result(verdict, detail, tries, retry_after(tries, retry_header))


# --- service account and access tokens ------------------------------------------------------------------


class ServiceAccount(msgspec.Struct):
    """The fields of a Google service-account JSON key that the token grant needs."""

    client_email: str
    private_key: str
    private_key_id: str | None = None
    project_id: str | None = None
    token_uri: str | None = None
    type: str | None = None


def load_service_account(path: str) -> ServiceAccount:
    """Read a service-account key file; ValueError naming the file when it is not one."""
    try:
        account = msgspec.json.decode(Path(path).read_bytes(), type=ServiceAccount)
    except FileNotFoundError:
        raise ValueError(f"service account key {path} does not exist") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"service account key {path}: {exc}") from None
    if account.type not in (None, "service_account"):
        raise ValueError(f"service account key {path}: type is {account.type!r}, not 'service_account'")
    return account


def assertion(account: ServiceAccount, audience: str, now: float) -> str:
    """The signed JWT (RS256) that the JWT bearer grant trades for an access token."""
    issued = int(now)
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": audience,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_S,
    }
    headers = {"kid": account.private_key_id} if account.private_key_id else None
    return jwt.encode(claims, account.private_key, algorithm="RS256", headers=headers)


class _TokenAnswer(msgspec.Struct):
    access_token: str | None = None
    expires_in: float | None = None
    token_type: str | None = None
    error: str | None = None
    error_description: str | None = None


_token_decoder = msgspec.json.Decoder(_TokenAnswer)


@dataclass
class App:
    """One configured app: its settings, its service account and its current access token."""

    config: PushAppConfig
    account: ServiceAccount
    project_id: str
    token_url: str
    token: str | None = None
    expires_at: float = 0.0
    lock: asyncio.Lock | None = None

    @property
    def sender(self) -> str:
        """The app's name, as a step's ``from`` gives it."""
        return self.config.sender

    @property
    def send_url(self) -> str:
        return f"{self.config.base_url.rstrip('/')}/v1/projects/{self.project_id}/messages:send"


def load_app(config: PushAppConfig) -> App:
    """An :class:`App` from its settings and key file; ValueError when the project cannot be told."""
    account = load_service_account(config.service_account_file)
    project_id = config.project_id or account.project_id
    if not project_id:
        raise ValueError(f"push app {config.sender!r}: no project_id (neither in the settings nor in the key file)")
    token_url = config.token_url or account.token_uri or DEFAULT_TOKEN_URL
    return App(config, account, project_id, token_url)


# --- the connector -------------------------------------------------------------------------------------

SENDS = CounterSpec(
    "omnirelay_fcm_sends", "FCM sends by app and result (delivered, or the outcome of a refusal)", ("app", "result")
)
TOKENS = CounterSpec(
    "omnirelay_fcm_token_requests",
    "OAuth2 access token requests by app and result (ok, refused, unreachable)",
    ("app", "result"),
)


class FcmPush(HttpConnector[App]):
    """A :class:`~omnirelay.connectors.base.Connector` for PUSH steps through FCM HTTP v1.

    One HTTP session serves every app; at most one token request per app is in flight.
    """

    provider = "FCM"
    sender_kind = "push app"
    unknown_sender_error = "EC_NO_APPLICATION_FOUND"
    unreachable_verdict = UNAVAILABLE
    sends = SENDS
    user_agent: ClassVar[str | None] = None
    extra_connections = 4

    def __init__(self, config: PushConfig, metrics: Metrics | None = None) -> None:
        super().__init__({a.sender: load_app(a) for a in config.apps}, metrics)
        self._tokens = TOKENS.of(metrics) if metrics is not None else None

    async def access_token(self, app: App, stale: str | None = None) -> str:
        """The app's access token, asked for when there is none, it is near its expiry, or it is ``stale``
        (FCM refused it). Concurrent callers share one request. Raises :class:`AuthError`."""
        if app.lock is None:
            app.lock = asyncio.Lock()
        async with app.lock:
            if app.token is not None and app.token != stale and time.time() < app.expires_at - REFRESH_MARGIN_S:
                return app.token
            app.token, app.expires_at = await self._fetch_token(app)
            return app.token

    async def _fetch_token(self, app: App) -> tuple[str, float]:
        now = time.time()
        form = {"grant_type": GRANT_TYPE, "assertion": assertion(app.account, app.token_url, now)}
        try:
            reply = await self.post(app.token_url, form)
        except Unreachable as exc:
            self._count_token(app, "unreachable")
            raise AuthError(UNAVAILABLE, f"FCM token endpoint unreachable: {exc.cause!r}") from None
        try:
            answer = _token_decoder.decode(reply.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            answer = _TokenAnswer()
        if reply.status == 200 and answer.access_token:
            self._count_token(app, "ok")
            return answer.access_token, now + (answer.expires_in or 3600.0)
        self._count_token(app, "refused")
        why = answer.error_description or answer.error or reply.body[:300].decode("utf-8", "replace")
        verdict = UNAVAILABLE if reply.status >= 500 or reply.status == 429 else AUTH
        raise AuthError(verdict, f"FCM token request refused (HTTP {reply.status}): {why}")

    def prepare(self, sub: Submission, sender: App) -> dict[str, Any]:
        if sub.address.isdigit():  # the destination's phone number: it gave no pushRegistrationId
            detail = f"no pushRegistrationId for {sub.address} (FCM addresses a device by its registration token)"
            raise Refused("EC_NO_REGISTRATION_ID_FOUND", detail)
        try:
            return build_message(sub.address, sub.content.get("push") or {}, sub.validity_s)
        except ContentError as exc:
            raise Refused("EC_INVALID_PUSH_PAYLOAD", str(exc)) from None

    async def send(self, sender: App, sub: Submission, body: dict[str, Any]) -> SubmitResult:
        data = msgspec.json.encode(body)
        stale: str | None = None
        try:
            for _ in range(2):  # a token FCM no longer takes is renewed once, and the message sent again
                token = await self.access_token(sender, stale)
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                answer = await self.post(sender.send_url, data, headers)
                if answer.status != 401:
                    break
                stale = token
        except AuthError as exc:
            return verdict_result(exc.verdict, exc.detail, sub.tries)
        return answer_to_result(answer.status, answer.body, sub.tries, answer.headers.get("Retry-After"))

    def _count_token(self, app: App, result: str) -> None:
        if self._tokens is not None and self.metrics is not None:
            self.metrics.of(self._tokens, app.sender, result).inc()
