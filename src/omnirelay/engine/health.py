"""Connector health for the console: what each connector answered lately, and what it says of itself (an SMPP
bind, its window), written to the store every few seconds by the process that runs the connectors, so the
console shows it also when it runs in another process (``omnirelay api`` beside ``omnirelay worker``)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from omnirelay.connectors.base import Connector, SubmitResult
from omnirelay.domain.lifecycle import Outcome
from omnirelay.store.base import Store

log = logging.getLogger("omnirelay.engine")

RECENT_S = 300.0
"""Errors are also counted over this many seconds back."""


@dataclass
class _Answers:
    submitted: int = 0
    refused: int = 0
    retried: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class Health:
    """Counts of the answers of each channel's connector since this process started."""

    def __init__(self) -> None:
        self._channels: dict[str, _Answers] = {}

    def observe(self, channel: str, result: SubmitResult) -> None:
        """Count one submission's answer: taken, refused at once, or handed back to retry."""
        answers = self._channels.get(channel)
        if answers is None:
            answers = self._channels[channel] = _Answers()
        answers.submitted += 1
        for report in result.reports:
            if report.outcome == Outcome.RETRY:
                answers.retried += 1
            elif report.after_s <= 0 and report.outcome in (Outcome.REJECTED, Outcome.UNDELIVERABLE):
                answers.refused += 1
            else:
                continue
            now = time.time()
            name = report.error or report.outcome
            answers.errors[name] = answers.errors.get(name, 0) + 1
            answers.last_error = f"{name}: {report.detail}" if report.detail else name
            answers.last_error_at = now
            answers.recent.append(now)
            break

    def of(self, channel: str, now: float) -> dict[str, Any]:
        """A channel's counts as JSON-ready data."""
        answers = self._channels.get(channel) or _Answers()
        while answers.recent and answers.recent[0] < now - RECENT_S:
            answers.recent.popleft()
        top = sorted(answers.errors.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        return {
            "submitted": answers.submitted,
            "refused": answers.refused,
            "retried": answers.retried,
            "errorsRecent": len(answers.recent),
            "recentSeconds": RECENT_S,
            "lastError": answers.last_error,
            "lastErrorAt": answers.last_error_at,
            "errors": dict(top),
        }


def snapshot(health: Health, connectors: Mapping[str, Connector], now: float) -> list[tuple[str, str, bytes]]:
    """One row per connector: (name, channel, JSON). A connector with a ``health()`` of its own (SMPP: one entry
    per SMSC connection, each with a ``name``) adds what it says to the channel's answer counts."""
    rows = []
    for channel, connector in sorted(connectors.items()):
        counts = health.of(channel, now)
        kind = type(connector).__name__
        own = getattr(connector, "health", None)
        parts: list[dict[str, Any]] = own() if callable(own) else [{"name": kind.lower()}]
        for part in parts:
            data = {"kind": kind, **counts, **part}
            rows.append((str(part["name"]), channel, msgspec.json.encode(data)))
    return rows


def process_name() -> str:
    """How the console names this process: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def report_forever(
    store: Store, health: Health, connectors: Mapping[str, Connector], every_s: float = 2.0
) -> None:
    """Write this process's connector snapshot every ``every_s`` seconds (nothing when it has no connectors)."""
    if not connectors:
        return
    process = process_name()
    while True:
        try:
            now = time.time()
            await store.put_connector_health(process, snapshot(health, connectors, now), now)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("storing the connectors' health failed; retrying")
        await asyncio.sleep(every_s)
