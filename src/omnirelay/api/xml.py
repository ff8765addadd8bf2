"""XML answers: ``/omni/`` answers (errors too) in XML when the request's ``Accept`` prefers it.

Handlers answer JSON; :func:`rewrite_as_xml` (run by :mod:`omnirelay.api.answers`) rewrites the answer under
the root element of Infobip's XML examples. JSON clients pay one header look-up.
"""

from __future__ import annotations

from aiohttp import web

from omnirelay.domain.xml import json_to_xml

XML_TYPES = ("application/xml", "text/xml")
_JSON_TYPES = ("application/json", "application/*", "*/*")

#: Root element of a successful answer, by (method, route).
ROOTS = {
    ("GET", "/omni/1/scenarios"): "scenariosResponse",
    ("POST", "/omni/1/scenarios"): "scenario",
    ("GET", "/omni/1/scenarios/{key}"): "scenario",
    ("PUT", "/omni/1/scenarios/{key}"): "scenario",
    ("POST", "/omni/1/advanced"): "omniResponse",
    ("POST", "/omni/1/text"): "omniResponse",
    ("GET", "/omni/1/reports"): "omniReportsResponse",
    ("GET", "/omni/1/logs"): "omniLogsResponse",
    ("GET", "/omni/1/messages/{messageId}"): "message",
}
ERROR_ROOT = "ApiException"


def xml_type(accept: str) -> str | None:
    """The XML media type ``accept`` prefers to JSON, or None (JSON wins ties, and ``*/*``)."""
    best: tuple[float, int, str | None] = (0.0, 0, None)
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        if media not in XML_TYPES and media not in _JSON_TYPES:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        rank = (q, -position, media if media in XML_TYPES else None)
        if q > 0 and rank[:2] > best[:2]:
            best = rank
    return best[2]


def _root(request: web.Request, status: int) -> str | None:
    if status >= 400:
        return ERROR_ROOT
    resource = request.match_info.route.resource
    if resource is None:
        return None
    return ROOTS.get((request.method, resource.canonical))


def rewrite_as_xml(request: web.Request, response: web.StreamResponse) -> None:
    """Rewrite a JSON answer to an ``/omni/`` request as XML when the request's ``Accept`` prefers it."""
    accept = request.headers.get("Accept")
    if accept is None or "xml" not in accept or not request.path.startswith("/omni/"):
        return
    media = xml_type(accept)
    if (
        media is None
        or not isinstance(response, web.Response)
        or response.content_type != "application/json"
        or not isinstance(response.body, bytes)
    ):
        return
    root = _root(request, response.status)
    if root is None:
        return
    response.body = json_to_xml(response.body, root)
    response.content_type = media
    response.charset = "utf-8"
