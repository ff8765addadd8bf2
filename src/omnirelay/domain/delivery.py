"""What a step is when it goes out to a connector, and what comes back for it from outside: the records the engine,
the connectors and the store pass between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnirelay.domain.lifecycle import Outcome


@dataclass(frozen=True)
class Submission:
    """One step of one message, ready for its channel."""

    message: int
    step: int
    account_id: int
    message_id: str
    channel: str
    sender: str | None
    address: str
    content: dict[str, Any]
    validity_s: float
    tries: int = 1
    """How many times this step has been submitted, this time included (more than 1 after a ``RETRY``)."""


@dataclass(frozen=True)
class Receipt:
    """An outcome that arrives from outside for a step submitted earlier: an SMPP delivery receipt, a
    WhatsApp status webhook. It finds its step by ``(channel, provider_id)``, the id the connector gave when it
    took the submission, even when it arrives before that id was stored or after a restart."""

    channel: str
    """The OMNI channel of the step (``SMS``, ``WHATSAPP``, ``EMAIL``)."""
    provider_id: str
    outcome: Outcome
    error: str | None = None
    """An error name of the catalogue (``EC_...``); the outcome's default when None."""
    not_a_user: bool = False
    detail: str | None = None
    after_s: float = 0.0
    """For ``RETRY``: how long to wait before submitting again."""
