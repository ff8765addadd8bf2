"""Connector health as the engine counts it (engine/health.py): answers taken, refused at once, handed back to
retry, the last error, the errors of the last minutes, and what a connector says of itself."""

from __future__ import annotations

from typing import Any

import msgspec

from omnirelay.connectors.base import Answered, LaterReport, SubmitResult
from omnirelay.domain.delivery import Submission
from omnirelay.engine import health


class _Graph:
    async def submit(self, batch: list[Submission], answered: Answered | None = None) -> list[SubmitResult]:
        return []

    async def close(self) -> None:
        return None


class _Smsc(_Graph):
    def health(self) -> list[dict[str, Any]]:
        return [{"name": "a", "bound": True, "windowInUse": 3}, {"name": "b", "bound": False, "windowInUse": 0}]


def test_answers_are_counted_per_channel() -> None:
    h = health.Health()
    h.observe("WHATSAPP", SubmitResult("wamid.1"))
    h.observe("WHATSAPP", SubmitResult(None, [LaterReport(0.0, "REJECTED", "EC_UNKNOWN_USER", detail="131026")]))
    h.observe("WHATSAPP", SubmitResult(None, [LaterReport(4.0, "RETRY", "EC_TOO_MANY_REQUESTS")]))
    h.observe("EMAIL", SubmitResult(None, [LaterReport(60.0, "RETRY", detail="421 try later")]))
    h.observe("SMS", SubmitResult("x", [LaterReport(0.5, "DELIVERED")]))  # a sandbox-like answer: no error
    wa = h.of("WHATSAPP", now=0.0)
    assert (wa["submitted"], wa["refused"], wa["retried"]) == (3, 1, 1)
    assert wa["lastError"] == "EC_TOO_MANY_REQUESTS"
    assert wa["errors"] == {"EC_UNKNOWN_USER": 1, "EC_TOO_MANY_REQUESTS": 1}
    email = h.of("EMAIL", now=0.0)
    assert email["retried"] == 1 and email["lastError"] == "RETRY: 421 try later"
    sms = h.of("SMS", now=0.0)
    assert (sms["submitted"], sms["refused"], sms["retried"], sms["lastError"]) == (1, 0, 0, None)
    assert h.of("VIBER", now=0.0)["submitted"] == 0


def test_recent_errors_age_out() -> None:
    h = health.Health()
    h.observe("EMAIL", SubmitResult(None, [LaterReport(0.0, "REJECTED", "EC_INVALID_EMAIL_ADDRESS")]))
    at = h.of("EMAIL", now=0.0)["lastErrorAt"]
    assert h.of("EMAIL", now=at + 10)["errorsRecent"] == 1
    later = h.of("EMAIL", now=at + health.RECENT_S + 1)
    assert later["errorsRecent"] == 0 and later["refused"] == 1  # the totals stay


def test_snapshot_rows() -> None:
    h = health.Health()
    h.observe("SMS", SubmitResult(None, [LaterReport(0.0, "REJECTED", "EC_THROTTLED")]))
    rows = health.snapshot(h, {"SMS": _Smsc(), "WHATSAPP": _Graph()}, now=0.0)
    assert [(name, channel) for name, channel, _ in rows] == [("a", "SMS"), ("b", "SMS"), ("_graph", "WHATSAPP")]
    a = msgspec.json.decode(rows[0][2])
    assert a["kind"] == "_Smsc" and a["bound"] is True and a["windowInUse"] == 3 and a["refused"] == 1
    assert msgspec.json.decode(rows[2][2])["submitted"] == 0
