"""The OMNI API in XML, with the element names of Infobip's XML examples.

Answers: :func:`to_xml` writes JSON-shaped data under a root element (``<omniResponse>``, ``<scenario>``, …).
A list is a wrapper element named after its field holding one element per item; the item's name is the
singular Infobip uses (``<flow><step>``, ``<messages><message>``, ``<results><result>``) and otherwise the
field's name again, as in Infobip's requests (``<destinations><destinations>``). ``validationErrors``, whose
keys are field paths and not XML names, is written as ``<field name="destinations[0].to"><message>…``.

Requests: :func:`from_xml` reads a body into builtins shaped by the msgspec type that validates it, so that
``msgspec.convert(..., strict=False)`` checks it exactly like JSON. It parses with defusedxml: a document
that declares entities (billion laughs, external entities) is refused before anything is expanded.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape, quoteattr

import defusedxml
import defusedxml.ElementTree
import msgspec
from msgspec import inspect

ITEM_NAMES = {"scenarios": "scenario", "flow": "step", "messages": "message", "results": "result"}
"""Element names of list items where Infobip's examples give them a singular."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


class XmlError(ValueError):
    """The body is not well-formed XML, or it declares entities or a DTD."""


# --- writing -----------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _field(name: str, messages: list[str]) -> str:
    inner = "".join(f"<message>{_scalar(m)}</message>" for m in messages)
    return f"<field name={quoteattr(name)}>{inner}</field>"


def _element(name: str, value: Any) -> str:
    if name == "validationErrors" and isinstance(value, dict):
        inner = "".join(_field(k, v) for k, v in value.items())
        return f"<{name}>{inner}</{name}>"
    if not _NAME.fullmatch(name):  # not an XML name: never one of Infobip's keys
        return _field(name, value if isinstance(value, list) else [value])
    if isinstance(value, dict):
        inner = "".join(_element(k, v) for k, v in value.items() if v is not None)
    elif isinstance(value, list):
        child = ITEM_NAMES.get(name, name)
        inner = "".join(_element(child, v) for v in value if v is not None)
    else:
        inner = _scalar(value)
    return f"<{name}>{inner}</{name}>"


def to_xml(data: Any, root: str) -> bytes:
    """JSON-shaped ``data`` (dicts, lists, scalars) as an XML document under ``<root>``."""
    return (_DECLARATION + _element(root, data)).encode()


def json_to_xml(body: bytes, root: str) -> bytes:
    """A JSON document as XML under ``<root>``."""
    return to_xml(msgspec.json.decode(body), root)


def reports_json_to_xml(body: bytes) -> bytes:
    """A JSON ``{"results":[...]}`` report body as ``<omniReportsResponse><results><result>…``."""
    return json_to_xml(body, "omniReportsResponse")


# --- reading -----------------------------------------------------------------------------------


def parse(body: bytes) -> Element:
    """The root element of a document; :class:`XmlError` when it is malformed or declares entities."""
    try:
        root: Element = defusedxml.ElementTree.fromstring(body, forbid_dtd=True)
    except (ParseError, defusedxml.DefusedXmlException) as exc:
        raise XmlError(str(exc) or type(exc).__name__) from None
    return root


def _tag(element: Element) -> str:
    tag = element.tag
    return tag.rpartition("}")[2] if tag.startswith("{") else tag


def _unwrap(t: inspect.Type) -> inspect.Type:
    """The one non-null member of an optional type (the structured one when there are several)."""
    while isinstance(t, inspect.Metadata):
        t = t.type
    if isinstance(t, inspect.UnionType):
        members = [m for m in t.types if not isinstance(m, inspect.NoneType)]
        structured = [m for m in members if isinstance(m, (inspect.StructType, inspect.ListType, inspect.DictType))]
        t = (structured or members)[0] if members else t
        while isinstance(t, inspect.Metadata):
            t = t.type
    return t


def _free(element: Element) -> Any:
    """An element of unknown type: its text, or a dict of its children (a repeated child becomes a list)."""
    children = list(element)
    if not children:
        return element.text or ""
    out: dict[str, Any] = {}
    for child in children:
        key, value = _tag(child), _free(child)
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def _items(element: Element, item: inspect.Type) -> list[Any]:
    children = list(element)
    if not children:
        text = (element.text or "").strip()
        return [_value(element, item)] if text else []
    if isinstance(item, inspect.StructType):
        fields = {f.encode_name for f in item.fields}
        if any(_tag(c) in fields for c in children):  # not wrapped: this element is the item itself
            return [_value(element, item)]
    return [_value(child, item) for child in children]


def _value(element: Element, t: inspect.Type) -> Any:
    t = _unwrap(t)
    if isinstance(t, inspect.StructType):
        fields = {f.encode_name: f.type for f in t.fields}
        out: dict[str, Any] = {}
        for child in element:
            name = _tag(child)
            if name not in fields:
                continue  # unknown fields are ignored, as in JSON
            field = _unwrap(fields[name])
            if isinstance(field, inspect.ListType):
                out.setdefault(name, []).extend(_items(child, field.item_type))
            else:
                out[name] = _value(child, field)
        return out
    if isinstance(t, inspect.ListType):
        return _items(element, t.item_type)
    if isinstance(t, inspect.DictType):
        value = _free(element)
        return value if isinstance(value, dict) else {}
    if isinstance(t, inspect.AnyType):
        return _free(element)
    text = element.text or ""
    return text if isinstance(t, inspect.StrType) else text.strip()


def from_xml(body: bytes, type_: Any) -> Any:
    """A request body in XML as builtins for ``msgspec.convert(..., type_, strict=False)``.

    The root element's name is not checked (Infobip's examples use ``<OmniAdvancedRequest>``,
    ``<scenario>``, ``<request>``). Raises :class:`XmlError`.
    """
    root = parse(body)
    try:
        return _value(root, inspect.type_info(type_))
    except RecursionError:
        raise XmlError("elements are nested too deeply") from None
