"""XML bodies for receivers that asked for ``notifyContentType: application/xml`` (Infobip's element names)."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

import msgspec


def _element(name: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_element(k, v) for k, v in value.items() if v is not None)
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    else:
        inner = escape(str(value))
    return f"<{name}>{inner}</{name}>"


def reports_json_to_xml(body: bytes) -> bytes:
    """A JSON ``{"results":[...]}`` report body as ``<omniReportsResponse><results><result>…``."""
    results = msgspec.json.decode(body).get("results", [])
    inner = "".join(_element("result", r) for r in results)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><omniReportsResponse><results>{inner}</results>'
        f"</omniReportsResponse>".encode()
    )
