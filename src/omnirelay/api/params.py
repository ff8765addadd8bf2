"""Query-string parameters, each checked with a 400 naming the parameter when it is wrong."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from omnirelay.api.errors import ApiProblem, bad_request, from_msgspec, malformed
from omnirelay.domain.xml import XmlError, from_xml

T = TypeVar("T")

#: How long a request body may take to arrive (``[limits] body_timeout_seconds``), set on the application.
BODY_TIMEOUT = web.AppKey("body_timeout_s", float)
DEFAULT_BODY_TIMEOUT_S = 60.0


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
    """The request body (JSON, or XML when declared ``application/xml`` or ``text/xml``) decoded and
    type-checked; a 400 naming the field otherwise. Any type not declared as XML is read as JSON, since many
    clients send JSON under a wrong or missing type.

    Refused before anything is stored, whatever the field: bodies nested deeper than :data:`MAX_DEPTH` (every
    later reader of the stored request would have to recurse as deep), and text no database keeps (NUL,
    invalid UTF-8, unpaired surrogates).
    """
    if request.content.is_eof():  # the usual body: it came with the head, no timer needed (one costs ~7 µs)
        body = await request.read()
    else:
        try:
            async with asyncio.timeout(request.config_dict.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT_S)):
                body = await request.read()
        except TimeoutError:  # a client trickling its body (slow-loris) does not hold a handler forever
            raise ApiProblem(408, "The request body did not arrive in time") from None
    if "xml" in request.content_type:
        value: T = read_xml(body, decoder.type)  # the XML parser itself refuses NUL and invalid UTF-8
        deep = too_deep(value)
        if deep is not None:
            raise bad_request({deep or "body": [f"is nested deeper than {MAX_DEPTH} levels"]})
        return value
    try:
        value = decoder.decode(body)
    except RecursionError:  # deeper than the decoder goes
        raise bad_request({_deep_path(body) or "body": [f"is nested deeper than {MAX_DEPTH} levels"]}) from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        bad = bad_text(body) if isinstance(exc, msgspec.DecodeError) else None
        if bad is not None:
            raise bad_request({bad[0] or "body": [bad[1]]}) from None
        raise from_msgspec(exc) from None
    deep = too_deep(value)
    if deep is not None:
        raise bad_request({deep or "body": [f"is nested deeper than {MAX_DEPTH} levels"]})
    if _NUL_ESCAPE in body:  # JSON can carry NUL only as this escape: the usual body is spared the walk
        bad = bad_text(body)
        if bad is not None:
            raise bad_request({bad[0] or "body": [bad[1]]})
    return value


#: How deep JSON may nest (objects and arrays); far beyond what any OMNI request needs.
MAX_DEPTH = 64
_NUL_ESCAPE = b"\\u0000"
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)
_free_fields: dict[type, list[tuple[str, str]]] = {}


def too_deep(value: Any) -> str | None:
    """The path of the first part of a decoded body that nests deeper than :data:`MAX_DEPTH`, or None.

    Only free-form parts (typed ``Any``) can nest without bound, so only they are walked: a request with
    thousands of typed destinations costs nothing here.
    """
    stack: list[tuple[int, list[str | int], Any]] = [(1, [], value)]
    while stack:
        depth, path, item = stack.pop()
        if isinstance(item, msgspec.Struct):
            for attr, name in _free(type(item)):
                stack.append((depth + 1, [*path, name], getattr(item, attr)))
            continue
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list | tuple):
            children = enumerate(item)
        else:
            continue
        if depth > MAX_DEPTH:
            return _path(path[:4])
        stack.extend((depth + 1, [*path, k], v) for k, v in children)
    return None


def _free(cls: type) -> list[tuple[str, str]]:
    """(attribute, JSON name) of the fields of a Struct class that can hold free-form values."""
    found = _free_fields.get(cls)
    if found is None:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        found = _free_fields[cls] = [(f.name, f.encode_name) for f in info.fields if _can_nest(f.type, set())]
    return found


def _can_nest(t: msgspec.inspect.Type, seen: set[type]) -> bool:
    """Whether a value of type ``t`` can hold free-form (``Any``) JSON."""
    mi = msgspec.inspect
    if isinstance(t, mi.AnyType):
        return True
    if isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        return _can_nest(t.item_type, seen)
    if isinstance(t, mi.DictType):
        return _can_nest(t.value_type, seen)
    if isinstance(t, mi.TupleType):
        return any(_can_nest(i, seen) for i in t.item_types)
    if isinstance(t, mi.UnionType):
        return any(_can_nest(i, seen) for i in t.types)
    if isinstance(t, mi.StructType):
        if t.cls in seen:
            return False
        seen.add(t.cls)
        return any(_can_nest(f.type, seen) for f in t.fields)
    return False


def _deep_path(body: bytes) -> str:
    """The path of the first value nested deeper than :data:`MAX_DEPTH` (its first levels, for the answer)."""
    frames: list[list[Any]] = []  # [is_object, key or index]
    last: bytes | None = None
    for match in _TOKEN.finditer(body):
        token = match.group()
        if token in (b"{", b"["):
            frames.append([token == b"{", None if token == b"{" else 0])
            if len(frames) > MAX_DEPTH:
                break
        elif token in (b"}", b"]"):
            if frames:
                frames.pop()
        elif token == b",":
            if frames and not frames[-1][0]:
                frames[-1][1] += 1
        elif token == b":" and frames and frames[-1][0] and last is not None:
            with contextlib.suppress(ValueError):
                frames[-1][1] = json.loads(last)
        last = token if token.startswith(b'"') else None
    return _path([f[1] for f in frames[:-1]][:4])


def check_url_text(request: web.Request) -> None:
    """A 400 naming the path or query parameter that holds text no database stores (NUL, unpaired surrogates),
    for every route at once."""
    for name, value in (*request.match_info.items(), *request.query.items()):
        problem = _text_problem(name) or _text_problem(value)
        if problem:
            raise bad_request({name: [problem]})


def bad_text(body: bytes) -> tuple[str, str] | None:
    """(path, problem) of the first string (or object key) in ``body`` that no database stores: NUL, invalid
    UTF-8 or an unpaired surrogate; None when there is none or ``body`` is not JSON at all."""
    try:
        value = json.loads(body.decode("utf-8", "surrogateescape"))  # keeps the bad bytes, as lone surrogates
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[list[str | int], Any]] = [([], value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return _path(path), problem
        elif isinstance(item, list):
            stack.extend(([*path, i], v) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            for key, v in reversed(list(item.items())):
                problem = _text_problem(key)
                if problem:
                    return _path(path), f"has a key that {problem}"
                stack.append(([*path, key], v))
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (U+0000), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text (an invalid byte or an unpaired surrogate)"
    return None


def _path(parts: list[str | int]) -> str:
    """``destinations[0].messageId`` from ``["destinations", 0, "messageId"]``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_xml(body: bytes, type_: Any) -> Any:
    """An XML body as ``type_``, checked as its JSON form would be; a 400 naming the field otherwise."""
    try:
        return msgspec.convert(from_xml(body, type_), type_, strict=False)
    except XmlError as exc:
        raise malformed("XML", str(exc)) from None
    except msgspec.ValidationError as exc:
        raise from_msgspec(exc) from None
