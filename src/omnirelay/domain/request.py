"""A send request as it is stored (``requests.payload``): its plan of steps, its content and its options, written
once at acceptance and read by the engine, the logs and the console for each of its messages."""

from __future__ import annotations

from typing import Any

import msgspec


class PlannedStep(msgspec.Struct, frozen=True, gc=False):
    """One step of a message's plan: its channel, sender and how long it may wait for a report."""

    channel: str
    sender: str | None
    validity_s: float


class RequestOptions(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the sender asked for besides the content (each absent when the request did not give it)."""

    notify: bool | None = None
    intermediateReport: bool | None = None
    notifyUrl: str | None = None
    notifyContentType: str | None = None
    callbackData: str | None = None


class StoredRequest(msgspec.Struct, frozen=True):
    """A stored request: ``{"steps": [...], "content": {...}, "options": {...}}``.

    ``content`` holds each channel's object as builtins, keyed by its request field (``sms``, ``whatsApp``), as
    the connectors take it.
    """

    steps: list[PlannedStep] = msgspec.field(default_factory=list)
    content: dict[str, Any] = msgspec.field(default_factory=dict)
    options: RequestOptions = msgspec.field(default_factory=RequestOptions)


request_decoder = msgspec.json.Decoder(StoredRequest)
"""Decodes a stored request payload."""
