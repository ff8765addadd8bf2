"""Query-string parameters, each checked with a 400 naming the parameter when it is wrong."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from aiohttp import web

from omnirelay.api.errors import ApiProblem, bad_request, from_msgspec

T = TypeVar("T")


def only_params(request: web.Request, *names: str) -> None:
    """Refuse a query parameter the endpoint does not know: a misspelled filter must not widen what a call reads
    (or, for the reports, takes)."""
    for name in request.query:
        if name not in names:
            raise bad_request({name: [f"is not a parameter of this endpoint; known: {', '.join(names)}"]})


def int_param(request: web.Request, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer parameter within bounds."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request({name: ["must be an integer"]}) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise bad_request({name: [f"must be {bound}"]})
    return value


def bool_param(request: web.Request, *names: str) -> bool | None:
    """A boolean parameter (the first of ``names`` present), or None when absent."""
    for name in names:
        raw = request.query.get(name)
        if raw is None or raw == "":
            continue
        lowered = raw.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise bad_request({name: ["must be true or false"]})
    return None


def list_param(request: web.Request, name: str) -> list[str]:
    """A list parameter, given comma-separated, repeated, or both."""
    values: list[str] = []
    for raw in request.query.getall(name, []):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values


def str_param(request: web.Request, name: str, max_length: int = 200) -> str | None:
    """A string parameter, or None when absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise bad_request({name: [f"must be at most {max_length} characters"]})
    return raw


async def read_json(request: web.Request, decoder: msgspec.json.Decoder[T]) -> T:
    """The request body decoded and type-checked; a 400 naming the field (or 415 for XML) otherwise."""
    require_json(request)
    try:
        return decoder.decode(await request.read())
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_msgspec(exc) from None


def require_json(request: web.Request) -> None:
    """Refuse bodies declared as XML: Infobip's API also speaks XML, this gateway only JSON.

    Any other declared type is read as JSON, since many clients send JSON under a wrong or missing type.
    """
    if "xml" in request.content_type:
        raise ApiProblem(415, f"Content-Type {request.content_type} is not supported: send application/json")
