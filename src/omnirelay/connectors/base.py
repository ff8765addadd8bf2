"""The channel contract: the engine hands a channel steps to submit and gets back what became of them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from omnirelay.domain.delivery import Receipt, Submission
from omnirelay.domain.lifecycle import Outcome


@dataclass(frozen=True)
class LaterReport:
    """An outcome the channel already knows will come, ``after_s`` seconds from now (sandbox, tests), or at
    once with ``after_s`` 0 (a refusal; ``RETRY`` after ``after_s`` for a submission to try again later)."""

    after_s: float
    outcome: Outcome
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


ReceiptSink = Callable[[list[Receipt]], Awaitable[None]]
"""Where connectors hand receipts; it returns once they are stored durably (acknowledge the peer after)."""

Answered = Callable[[int, SubmitResult], None]
"""Called by a channel with a submission's index in its batch and its result, as soon as that result is known
(the engine records it within milliseconds, so a crash while other submissions of the batch are still
waiting for their peer does not lose a provider id that was already handed out)."""


class Connector(Protocol):
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
class InstantConnector(Connector, Protocol):
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
