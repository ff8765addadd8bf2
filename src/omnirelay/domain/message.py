"""A message's state as it walks its scenario: the attempts made, their outcomes, and its history."""

from __future__ import annotations

import msgspec

from omnirelay.domain.lifecycle import AttemptState, Phase


class Attempt(msgspec.Struct, omit_defaults=True):
    """One step tried for a message."""

    step: int
    channel: str
    state: AttemptState
    started_at: float
    done_at: float | None = None
    status: str | None = None
    error: str | None = None
    provider_id: str | None = None
    parts: int = 1
    note: str | None = None
    tries: int = 1
    """Submissions of this step (more than one after the channel asked for a retry)."""


class LogLine(msgspec.Struct):
    """One line of a message's history."""

    at: float
    text: str


class MessageState(msgspec.Struct, omit_defaults=True):
    """Where a message stands: its phase, the attempts of its steps, its history and its latest status."""

    phase: Phase = Phase.WAITING
    step: int = -1
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    history: list[LogLine] = msgspec.field(default_factory=list)
    status: str = "PENDING_ENROUTE"
    error: str = "NO_ERROR"
    channel: str | None = None
    sent_at: float | None = None
    done_at: float | None = None


state_encoder = msgspec.json.Encoder()
state_decoder = msgspec.json.Decoder(MessageState)


def initial_state(now: float, send_at: float | None) -> bytes:
    """The stored state of a message just accepted."""
    note = "accepted" if send_at is None else "accepted, scheduled"
    return state_encoder.encode(MessageState(history=[LogLine(now, note)]))


def rejected_state(now: float, status: str, error: str, reason: str) -> bytes:
    """The stored state of a destination refused at acceptance: final at once, with why in its history."""
    return state_encoder.encode(
        MessageState(
            phase=Phase.DONE, status=status, error=error, done_at=now, history=[LogLine(now, f"rejected: {reason}")]
        )
    )
