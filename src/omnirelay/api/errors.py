"""Infobip's error envelope: every 4xx and 5xx answer is ``{"requestError":{"serviceException":{...}}}``."""

from __future__ import annotations

import msgspec
from aiohttp import web

from omnirelay.domain.model import ApiError, RequestError, ServiceException

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ApiError)

#: ``User-Agent`` of Infobip's old official Python client (2.x): it turns every key of an error body into an
#: attribute of a fixed class and fails with ``AttributeError`` on an object-valued key it does not know, so
#: it cannot read ``validationErrors``.
LEGACY_PYTHON_AGENT = "Python-Client-Library"

TEXTS = {
    400: ("BAD_REQUEST", "Bad request"),
    401: ("UNAUTHORIZED", "Unauthorized"),
    403: ("FORBIDDEN", "Forbidden"),
    404: ("NOT_FOUND", "Not found"),
    405: ("METHOD_NOT_ALLOWED", "Method not allowed"),
    413: ("PAYLOAD_TOO_LARGE", "Request body too large"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"),
    429: ("TOO_MANY_REQUESTS", "Too many requests"),
    500: ("GENERAL_ERROR", "Something went wrong. Please contact support."),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable. Please retry."),
}


def envelope(
    status: int,
    text: str | None = None,
    validation: dict[str, list[str]] | None = None,
    message_id: str | None = None,
) -> web.Response:
    """An error answer in Infobip's envelope."""
    default_id, default_text = TEXTS.get(status, ("GENERAL_ERROR", "Error"))
    body = ApiError(
        RequestError(
            ServiceException(messageId=message_id or default_id, text=text or default_text, validationErrors=validation)
        )
    )
    return web.Response(status=status, body=_encoder.encode(body), content_type="application/json")


class ApiProblem(Exception):
    """Raised by handlers to answer with an error envelope."""

    def __init__(self, status: int, text: str | None = None, validation: dict[str, list[str]] | None = None) -> None:
        super().__init__(text or TEXTS.get(status, ("", ""))[1])
        self.status = status
        self.text = text
        self.validation = validation

    def response(self) -> web.Response:
        """The envelope for this problem."""
        return envelope(self.status, self.text, self.validation)


def naming_every_field(validation: dict[str, list[str]]) -> str:
    """One text that names every bad field, for clients that cannot read ``validationErrors``."""
    return "Invalid " + "; ".join(f"'{field}': {', '.join(messages)}" for field, messages in validation.items())


def without_validation(body: bytes) -> bytes:
    """An envelope's ``validationErrors`` folded into its ``text``; any other body unchanged."""
    try:
        error = _decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return body
    details = error.requestError.serviceException
    if not details.validationErrors:
        return body
    details.text = naming_every_field(details.validationErrors)
    details.validationErrors = None
    return _encoder.encode(error)


def rewrite_for_legacy_client(request: web.Request, response: web.StreamResponse) -> None:
    """An error answer the old official Python client can parse: no ``validationErrors``, the fields in ``text``."""
    if (
        response.status >= 400
        and isinstance(response, web.Response)
        and isinstance(response.body, bytes)
        and request.headers.get("User-Agent", "").startswith(LEGACY_PYTHON_AGENT)
    ):
        response.body = without_validation(response.body)


def bad_request(validation: dict[str, list[str]], text: str | None = None) -> ApiProblem:
    """A 400 naming each bad field; the text names the first one so a client's log says what was wrong."""
    if text is None:
        field, messages = next(iter(validation.items()))
        text = f"Invalid '{field}': {messages[0]}"
    return ApiProblem(400, text, validation)


def malformed(syntax: str, message: str) -> ApiProblem:
    """A 400 for a body that is not well-formed JSON or XML (``syntax``)."""
    return ApiProblem(400, f"Malformed {syntax}: {message}", {"body": [f"malformed {syntax}: {message}"]})


def from_msgspec(exc: msgspec.ValidationError | msgspec.DecodeError) -> ApiProblem:
    """A 400 for a body that is not JSON or whose types are wrong, naming the field."""
    message = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return malformed("JSON", message)
    path = ""
    if " - at `$" in message:
        message, _, where = message.rpartition(" - at `$")
        path = where.rstrip("`").lstrip(".")
    if message.startswith("Object missing required field `"):
        field = message.split("`")[1]
        path = f"{path}.{field}" if path else field
        message = "is required"
    return bad_request({path or "body": [message]})
