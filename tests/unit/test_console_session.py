"""The console's signed session cookies."""

from __future__ import annotations

from omnirelay.console.session import Session, Sessions


def test_round_trip_and_expiry() -> None:
    sessions = Sessions(b"k" * 32, ttl_s=60)
    value = sessions.issue(7, "Aladdin.the:great", 1000.0)
    assert sessions.verify(value, 1000.0) == Session(7, "Aladdin.the:great")
    assert sessions.verify(value, 1061.0) is None


def test_forgeries_are_refused() -> None:
    sessions = Sessions(b"k" * 32)
    value = sessions.issue(7, "bob", 1000.0)
    account, name, expires, signature = value.split(".")
    assert sessions.verify(f"8.{name}.{expires}.{signature}", 1000.0) is None
    assert sessions.verify(f"{account}.{name}.{int(expires) + 1}.{signature}", 1000.0) is None
    assert Sessions(b"x" * 32).verify(value, 1000.0) is None  # another process's secret
    for junk in ("", "x", "...", "a.b.c.d", value + "0"):
        assert sessions.verify(junk, 1000.0) is None
    assert sessions.verify(None, 1000.0) is None
