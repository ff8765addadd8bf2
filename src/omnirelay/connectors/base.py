"""The channel contract: the engine hands a channel steps to submit and gets back what became of them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
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
    tries: int = 1
    """How many times this step has been submitted, this time included (more than 1 after a ``RETRY``)."""


#: What a step can come to. ``RETRY`` is not an outcome but a request: submit the same step again (the
#: provider did not take it: throttled, queue full, a 4xx), within the validity the step already has.
OUTCOMES = ("DELIVERED", "SEEN", "UNDELIVERABLE", "REJECTED", "EXPIRED", "RETRY")


@dataclass(frozen=True)
class LaterReport:
    """An outcome the channel already knows will come, ``after_s`` seconds from now (sandbox, tests), or at
    once with ``after_s`` 0 (a refusal; ``RETRY`` after ``after_s`` for a submission to try again later)."""

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


@dataclass(frozen=True)
class Receipt:
    """An outcome that arrives from outside for a step submitted earlier: an SMPP delivery receipt, a
    WhatsApp status webhook. It finds its step by ``(channel, provider_id)``, the id the connector gave in
    its :class:`SubmitResult`, even when it arrives before that id was stored or after a restart."""

    channel: str
    """The OMNI channel of the step (``SMS``, ``WHATSAPP``, ``EMAIL``)."""
    provider_id: str
    outcome: str
    """One of :data:`OUTCOMES`."""
    error: str | None = None
    """An error name of the catalogue (``EC_...``); the outcome's default when None."""
    not_a_user: bool = False
    detail: str | None = None
    after_s: float = 0.0
    """For ``RETRY``: how long to wait before submitting again."""


ReceiptSink = Callable[[list[Receipt]], Awaitable[None]]
"""Where connectors hand receipts; it returns once they are stored durably (acknowledge the peer after)."""

Answered = Callable[[int, SubmitResult], None]
"""Called by a channel with a submission's index in its batch and its result, as soon as that result is known
(the engine records it within milliseconds, so a crash while other submissions of the batch are still
waiting for their peer does not lose a provider id that was already handed out)."""


class Channel(Protocol):
    """A connector to the outside world (or the sandbox) for one or more OMNI channels.

    A connector that subclasses this protocol inherits :meth:`start` doing nothing.
    """

    async def start(self) -> None:
        """Start what runs in the background (SMPP binds); called once, before the first :meth:`submit`.
        Nothing to start by default."""
        return None

    async def submit(self, batch: list[Submission], answered: Answered | None = None) -> list[SubmitResult]:
        """Submit a batch; one result per submission, in order. Must not raise for one bad message.

        Each result is also given to ``answered`` (once per submission) the moment it is known, not when the
        whole batch is: one slow answer must not hold back the others.
        """
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


async def submit_each(
    batch: Sequence[Submission],
    submit_one: Callable[[Submission], Awaitable[SubmitResult]],
    answered: Answered | None,
) -> list[SubmitResult]:
    """Run ``submit_one`` for every submission concurrently, giving each result to ``answered`` as soon as it
    is there; the results in order (for channels that submit each message on its own: HTTP, SMTP)."""

    async def one(index: int, submission: Submission) -> SubmitResult:
        result = await submit_one(submission)
        if answered is not None:
            answered(index, result)
        return result

    return list(await asyncio.gather(*(one(i, sub) for i, sub in enumerate(batch))))
