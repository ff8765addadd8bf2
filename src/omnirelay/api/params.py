"""Query-string parameters, each checked with a 400 naming the parameter when it is wrong."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from omnirelay.api.errors import bad_request, from_msgspec, malformed
from omnirelay.domain.xml import XmlError, from_xml

T = TypeVar("T")


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
    """The request body (JSON, or XML when declared ``application/xml`` or ``text/xml``) decoded and
    type-checked; a 400 naming the field otherwise.

    Any type not declared as XML is read as JSON, since many clients send JSON under a wrong or missing type.
    """
    body = await request.read()
    if "xml" in request.content_type:
        parsed: T = read_xml(body, decoder.type)
        return parsed
    try:
        return decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_msgspec(exc) from None


def read_xml(body: bytes, type_: Any) -> Any:
    """An XML body as ``type_``, checked as its JSON form would be; a 400 naming the field otherwise."""
    try:
        return msgspec.convert(from_xml(body, type_), type_, strict=False)
    except XmlError as exc:
        raise malformed("XML", str(exc)) from None
    except msgspec.ValidationError as exc:
        raise from_msgspec(exc) from None
