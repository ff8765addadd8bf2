"""The channel contract: the engine hands a channel steps to submit and gets back what became of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


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


@dataclass(frozen=True)
class LaterReport:
    """An outcome the channel already knows will come, ``after_s`` seconds from now (sandbox, tests)."""

    after_s: float
    outcome: str
    error: str | None = None
    not_a_user: bool = False
    detail: str | None = None


@dataclass(frozen=True)
class SubmitResult:
    """What became of one submission: taken (with the provider's id) or refused at once.

    A refusal is an outcome ``REJECTED`` (with an error name) at ``after_s`` 0; a channel that knows the
    final outcome already (the sandbox) gives it in ``reports``.
    """

    provider_id: str | None = None
    reports: list[LaterReport] = field(default_factory=list)


class Channel(Protocol):
    """A connector to the outside world (or the sandbox) for one or more OMNI channels."""

    async def submit(self, batch: list[Submission]) -> list[SubmitResult]:
        """Submit a batch; one result per submission, in order. Must not raise for one bad message."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class InstantChannel(Channel, Protocol):
    """A channel that answers without any I/O (the sandbox): the engine asks it inside the transaction that
    submits the step, so its answer is recorded atomically with the submission and a crash cannot split them."""

    def decide_now(self, submission: Submission) -> SubmitResult:
        """The answer to one submission, computed on the spot."""
        ...
