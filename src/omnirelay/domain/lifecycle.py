"""The words of a message's lifecycle: what a step can come to, the states of an attempt, the phases of a message
and the kinds of job that move it on.

Each is a :class:`enum.StrEnum` whose values are the strings stored in the database and in the encoded states and
events, so a member compares, hashes and encodes exactly as its string does.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    """What a step can come to, as a connector or a receipt tells it.

    ``RETRY`` is not an outcome but a request: submit the same step again (the provider did not take it: throttled,
    queue full, a 4xx), within the validity the step already has.
    """

    DELIVERED = "DELIVERED"
    SEEN = "SEEN"
    UNDELIVERABLE = "UNDELIVERABLE"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    RETRY = "RETRY"


#: The outcomes that end a message well.
SUCCESS: frozenset[Outcome] = frozenset({Outcome.DELIVERED, Outcome.SEEN})
#: The outcomes a step can end in (all but ``RETRY``).
FINAL_OUTCOMES: tuple[Outcome, ...] = tuple(o for o in Outcome if o is not Outcome.RETRY)


class AttemptState(enum.StrEnum):
    """Where one attempt of a step stands: PENDING (waiting for its submit job), SUBMITTING, ACCEPTED, then the
    outcome it came to; or SKIPPED (not tried), CANCELLED (an earlier step succeeded first)."""

    PENDING = "PENDING"
    SUBMITTING = "SUBMITTING"
    ACCEPTED = "ACCEPTED"
    DELIVERED = "DELIVERED"
    SEEN = "SEEN"
    UNDELIVERABLE = "UNDELIVERABLE"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


#: The attempt state each final outcome leaves an attempt in.
STATE_OF: dict[Outcome, AttemptState] = {o: AttemptState(o.value) for o in FINAL_OUTCOMES}
#: Attempts submitted and waiting for their outcome.
IN_FLIGHT: frozenset[AttemptState] = frozenset({AttemptState.SUBMITTING, AttemptState.ACCEPTED})
#: Attempts that were never submitted.
NOT_TRIED: frozenset[AttemptState] = frozenset({AttemptState.SKIPPED, AttemptState.CANCELLED, AttemptState.PENDING})


class Phase(enum.StrEnum):
    """Where a message stands: accepted and not started, walking its steps, finished."""

    WAITING = "WAITING"
    ACTIVE = "ACTIVE"
    DONE = "DONE"


class JobKind(enum.StrEnum):
    """The kind of a stored job (``jobs.kind``): which event it brings to the engine when it falls due.

    Each event type of :mod:`omnirelay.domain.failover` names its kind explicitly (its ``job_kind``), so renaming
    a class never changes what is stored or which jobs a store cancels.
    """

    START = "start"
    SUBMIT_STEP = "submitstep"
    SUBMITTED = "submitted"
    REPORT = "report"
    EXPIRE = "expire"
