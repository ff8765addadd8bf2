"""The failover rules: one pure function, :func:`decide`, moves a message's state on one event.

A message walks its plan a step at a time. A step rejected by its channel fails over at once; a step
with no final report when its validity runs out fails over then; a delivered or seen step ends the
message; the last step's failure ends it with that failure. States only move forward: a report for a
step the message has already left is written into the history and never reopens a finished message,
except that a late success wins while the next step is still waiting to be submitted, and a delivered
step can still be seen (never the other way round). A ``RETRY`` report (the channel did not take the
step: throttled, busy) submits the same step again, within the validity it already has.

``decide`` does no I/O. The engine loads the state, calls it, and stores what it returns (the new
state and the actions) in one transaction.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from omnirelay.domain.dates import format_ts
from omnirelay.domain.lifecycle import IN_FLIGHT, NOT_TRIED, STATE_OF, SUCCESS, AttemptState, JobKind, Outcome, Phase
from omnirelay.domain.message import Attempt, LogLine, MessageState

#: Default status and error of each outcome, and of a step whose validity ran out with no report.
DEFAULTS: dict[Outcome, tuple[str, str]] = {
    Outcome.DELIVERED: ("DELIVERED_TO_HANDSET", "NO_ERROR"),
    Outcome.SEEN: ("DELIVERED_TO_HANDSET", "NO_ERROR"),
    Outcome.UNDELIVERABLE: ("UNDELIVERABLE_NOT_DELIVERED", "EC_ABSENT_SUBSCRIBER_SM"),
    Outcome.REJECTED: ("REJECTED_DESTINATION", "EC_UNKNOWN_SUBSCRIBER"),
    Outcome.EXPIRED: ("EXPIRED_EXPIRED", "EC_VALIDITY_EXPIRED"),
}
WHATSAPP_NOT_A_USER = "EC_UNKNOWN_USER"
#: Attempts that are not the step's attempt any more (skipped, or cancelled by an earlier step's success).
_GONE = frozenset({AttemptState.SKIPPED, AttemptState.CANCELLED})
#: Attempts with no outcome (yet).
_UNFINISHED = NOT_TRIED | IN_FLIGHT


# --- events ------------------------------------------------------------------------------------


class Start(msgspec.Struct, tag="start"):
    """The message's time has come (now, or its sendAt): begin with the first usable step."""

    job_kind: ClassVar[JobKind] = JobKind.START


class SubmitStep(msgspec.Struct, tag="submit"):
    """Submit a step that failover chose (a job of its own, so a late success can still cancel it)."""

    job_kind: ClassVar[JobKind] = JobKind.SUBMIT_STEP

    step: int


class Submitted(msgspec.Struct, tag="submitted"):
    """The channel took the step: it is on its way and may report later."""

    job_kind: ClassVar[JobKind] = JobKind.SUBMITTED

    step: int
    provider_id: str | None = None


class Reported(msgspec.Struct, tag="report"):
    """The channel reports an outcome for a step (at submission or later)."""

    job_kind: ClassVar[JobKind] = JobKind.REPORT

    step: int
    outcome: Outcome
    error: str | None = None
    not_a_user: bool = False
    """The channel says the address is not its user (WhatsApp's 131026): remember it."""
    detail: str | None = None


class Expire(msgspec.Struct, tag="expire"):
    """The step's validity period ran out."""

    job_kind: ClassVar[JobKind] = JobKind.EXPIRE

    step: int


Event = Start | SubmitStep | Submitted | Reported | Expire
#: Every event type, each with its explicit ``job_kind``.
EVENT_TYPES: tuple[type[Event], ...] = (Start, SubmitStep, Submitted, Reported, Expire)


# --- what the engine must do -------------------------------------------------------------------


class Submit(msgspec.Struct, frozen=True):
    """Hand the step to its channel now."""

    step: int


class Schedule(msgspec.Struct, frozen=True):
    """Store a job: ``event`` happens at ``at`` unless cancelled first."""

    event: Event
    at: float


class CancelTimers(msgspec.Struct, frozen=True):
    """Drop the message's pending timers (its validity timer of ``step``)."""

    step: int


class Final(msgspec.Struct, frozen=True):
    """The message is finished: write its one final report (from the attempt of ``step``)."""

    step: int


class Intermediate(msgspec.Struct, frozen=True):
    """A step failed over: an intermediate report (if the sender asked for them)."""

    step: int


class Seen(msgspec.Struct, frozen=True):
    """The recipient read the message of ``step``: a seen report (if the sender gave a notifyUrl)."""

    step: int


class Remember(msgspec.Struct, frozen=True):
    """Capability memory: this address is not a user of ``channel`` until ``until``."""

    channel: str
    until: float


Action = Submit | Schedule | CancelTimers | Final | Intermediate | Seen | Remember


# --- what decide needs to know -----------------------------------------------------------------


class PlanStep(msgspec.Struct, frozen=True):
    """A step as this message will try it."""

    channel: str
    validity_s: float
    address: str | None
    has_content: bool


class Context(msgspec.Struct, frozen=True):
    """Facts about the world at the time of the event."""

    now: float
    plan: list[PlanStep]
    blocked_until: dict[str, float] = msgspec.field(default_factory=dict)
    """Channels the address is remembered not to be a user of, and until when."""
    remember_seconds: float = 7 * 86400


class Decision(msgspec.Struct):
    """The new state and what to do about it."""

    state: MessageState
    actions: list[Action]


def _log(state: MessageState, now: float, text: str) -> None:
    state.history.append(LogLine(now, text))


def _status_error(outcome: Outcome, channel: str, error: str | None, not_a_user: bool) -> tuple[str, str]:
    status, default_error = DEFAULTS[outcome]
    if error is None and outcome == Outcome.REJECTED and channel == "WHATSAPP" and not_a_user:
        error = WHATSAPP_NOT_A_USER
    return status, error or default_error


def _current(state: MessageState) -> Attempt | None:
    for attempt in reversed(state.attempts):
        if attempt.step == state.step:
            return attempt
    return None


def _attempt(state: MessageState, step: int) -> Attempt | None:
    for attempt in reversed(state.attempts):
        if attempt.step == step and attempt.state not in _GONE:
            return attempt
    return None


def _begin_from(state: MessageState, first: int, ctx: Context, actions: list[Action], *, immediate: bool) -> None:
    """Move to the first usable step at or after ``first``; finish the message when none is left."""
    now = ctx.now
    for index in range(first, len(ctx.plan)):
        step = ctx.plan[index]
        reason = _skip_reason(step, ctx)
        if reason is not None:
            state.attempts.append(
                Attempt(
                    step=index,
                    channel=step.channel,
                    state=AttemptState.SKIPPED,
                    started_at=now,
                    done_at=now,
                    note=reason,
                )
            )
            _log(state, now, f"step {index + 1} ({step.channel}) skipped: {reason}")
            continue
        state.step = index
        state.phase = Phase.ACTIVE
        state.channel = step.channel
        if immediate:
            _submit(state, index, ctx, actions)
        else:
            state.attempts.append(Attempt(step=index, channel=step.channel, state=AttemptState.PENDING, started_at=now))
            actions.append(Schedule(SubmitStep(index), now))
            _log(state, now, f"failing over to step {index + 1} ({step.channel})")
        return
    _finish_without_step(state, ctx, actions)


def _submit(state: MessageState, index: int, ctx: Context, actions: list[Action]) -> None:
    step = ctx.plan[index]
    attempt = _current(state)
    if attempt is None or attempt.step != index or attempt.state != AttemptState.PENDING:
        attempt = Attempt(step=index, channel=step.channel, state=AttemptState.PENDING, started_at=ctx.now)
        state.attempts.append(attempt)
    attempt.state = AttemptState.SUBMITTING
    attempt.started_at = ctx.now
    if state.sent_at is None:
        state.sent_at = ctx.now
    actions.append(Submit(index))
    actions.append(Schedule(Expire(index), ctx.now + step.validity_s))
    _log(state, ctx.now, f"step {index + 1} ({step.channel}) submitted to {step.address}")


def _finish(state: MessageState, attempt: Attempt, ctx: Context, actions: list[Action]) -> None:
    state.phase = Phase.DONE
    state.step = attempt.step
    state.status = attempt.status or "PENDING_ENROUTE"
    state.error = attempt.error or "NO_ERROR"
    state.channel = attempt.channel
    state.done_at = ctx.now
    actions.append(CancelTimers(attempt.step))
    actions.append(Final(attempt.step))
    _log(state, ctx.now, f"final: {state.status} ({state.error}) on {attempt.channel}")


def _finish_without_step(state: MessageState, ctx: Context, actions: list[Action]) -> None:
    """No step is left: end with the last real attempt's failure, or as rejected if none was made."""
    for attempt in reversed(state.attempts):
        if attempt.state not in _UNFINISHED:
            _finish(state, attempt, ctx, actions)
            return
    last = state.attempts[-1] if state.attempts else None
    channel = last.channel if last else (ctx.plan[0].channel if ctx.plan else "SMS")
    step = last.step if last else 0
    not_a_user = bool(last and last.note and last.note.startswith("capability memory"))
    status, error = _status_error(Outcome.REJECTED, channel, None, not_a_user)
    final = Attempt(
        step=step,
        channel=channel,
        state=AttemptState.REJECTED,
        started_at=ctx.now,
        done_at=ctx.now,
        status=status,
        error=error,
        note="no usable step",
    )
    state.attempts.append(final)
    _finish(state, final, ctx, actions)


def _fail_current(
    state: MessageState,
    attempt: Attempt,
    outcome: Outcome,
    error: str | None,
    not_a_user: bool,
    ctx: Context,
    actions: list[Action],
    detail: str | None,
) -> None:
    attempt.state = STATE_OF[outcome]
    attempt.status, attempt.error = _status_error(outcome, attempt.channel, error, not_a_user)
    attempt.done_at = ctx.now
    if detail:
        attempt.note = detail
    _log(state, ctx.now, f"step {attempt.step + 1} ({attempt.channel}) {outcome.lower()}: {attempt.error}")
    if not_a_user:
        until = ctx.now + ctx.remember_seconds
        actions.append(Remember(attempt.channel, until))
        _log(state, ctx.now, f"remembered: not a {attempt.channel} user until {format_ts(until)}")
    actions.append(CancelTimers(attempt.step))
    if any(_skip_reason(later, ctx) is None for later in ctx.plan[attempt.step + 1 :]):
        actions.append(Intermediate(attempt.step))
    # A rejection fails over at once (nothing can still come of the rejected step). After silence or a
    # failure report the next step waits for a job of its own, so that a late success can still cancel it.
    _begin_from(state, attempt.step + 1, ctx, actions, immediate=outcome == Outcome.REJECTED)


def _skip_reason(step: PlanStep, ctx: Context) -> str | None:
    """Why a step cannot be tried for this message, or None when it can."""
    if step.address is None:
        return "the destination has no address for this channel"
    if not step.has_content:
        return "the request has no content for this channel"
    until = ctx.blocked_until.get(step.channel, 0.0)
    if until > ctx.now:
        return f"capability memory: {step.address} is not a {step.channel} user (remembered until {format_ts(until)})"
    return None


def decide(state: MessageState, event: Event, ctx: Context) -> Decision:
    """The state after ``event`` and the actions it calls for. ``state`` is not modified."""
    state = msgspec.structs.replace(
        state, attempts=[msgspec.structs.replace(a) for a in state.attempts], history=list(state.history)
    )
    return Decision(state, decide_in_place(state, event, ctx))


def decide_in_place(state: MessageState, event: Event, ctx: Context) -> list[Action]:
    """As :func:`decide`, but moves ``state`` itself on and returns the actions: for a caller that owns the
    state (the engine, which has just decoded it) and need not pay for a copy per event."""
    actions: list[Action] = []
    now = ctx.now

    if state.phase == Phase.DONE:
        final = _attempt(state, state.step)
        if (
            isinstance(event, Reported)
            and event.outcome == Outcome.SEEN
            and event.step == state.step
            and final is not None
            and final.state == AttemptState.DELIVERED
        ):
            final.state = AttemptState.SEEN
            actions.append(Seen(event.step))
            _log(state, now, f"step {event.step + 1} ({final.channel}) seen")
        elif isinstance(event, Reported):
            _log(
                state,
                now,
                f"late report for step {event.step + 1} ignored, message already final: {event.outcome}",
            )
            attempt = _attempt(state, event.step)
            if attempt is not None and attempt.state in IN_FLIGHT and event.outcome in STATE_OF:
                attempt.state = STATE_OF[event.outcome]
                attempt.done_at = now
        return actions

    if isinstance(event, Start):
        if state.phase == Phase.WAITING:
            _begin_from(state, 0, ctx, actions, immediate=True)
        return actions

    if isinstance(event, SubmitStep):
        attempt = _current(state)
        if state.step == event.step and attempt is not None and attempt.state == AttemptState.PENDING:
            _submit(state, event.step, ctx, actions)
        return actions

    attempt = _attempt(state, event.step)
    if attempt is None:
        return actions

    if isinstance(event, Submitted):
        if event.provider_id:
            attempt.provider_id = event.provider_id
        if attempt.state == AttemptState.SUBMITTING:
            attempt.state = AttemptState.ACCEPTED
        return actions

    is_current = event.step == state.step
    if isinstance(event, Expire):
        if is_current and attempt.state in IN_FLIGHT:
            _fail_current(state, attempt, Outcome.EXPIRED, None, False, ctx, actions, "validity period ran out")
        return actions

    # a Report
    if event.outcome == Outcome.RETRY:
        if is_current and attempt.state in IN_FLIGHT:
            attempt.state = AttemptState.SUBMITTING
            attempt.tries += 1
            actions.append(Submit(event.step))
            _log(state, now, f"step {event.step + 1} ({attempt.channel}) submitted again: {event.detail or 'retry'}")
        return actions

    if is_current and attempt.state in IN_FLIGHT:
        if event.outcome in SUCCESS:
            attempt.state = STATE_OF[event.outcome]
            attempt.status, attempt.error = _status_error(event.outcome, attempt.channel, event.error, False)
            attempt.done_at = now
            _log(state, now, f"step {attempt.step + 1} ({attempt.channel}) {event.outcome.lower()}")
            _finish(state, attempt, ctx, actions)
            if event.outcome == Outcome.SEEN:
                actions.append(Seen(attempt.step))
        else:
            _fail_current(state, attempt, event.outcome, event.error, event.not_a_user, ctx, actions, event.detail)
        return actions

    if event.step >= state.step or attempt.state in NOT_TRIED:
        _log(state, now, f"report for step {event.step + 1} ({attempt.channel}) ignored: that step was not submitted")
        return actions

    # A report for a step the message already left.
    _log(state, now, f"late report for step {event.step + 1} ({attempt.channel}): {event.outcome}")
    current = _current(state)
    if event.outcome in SUCCESS and current is not None and current.state == AttemptState.PENDING:
        current.state = AttemptState.CANCELLED
        current.done_at = now
        _log(state, now, f"step {current.step + 1} ({current.channel}) cancelled: the earlier step succeeded")
        attempt.state = STATE_OF[event.outcome]
        attempt.status, attempt.error = _status_error(event.outcome, attempt.channel, event.error, False)
        attempt.done_at = now
        _finish(state, attempt, ctx, actions)
        if event.outcome == Outcome.SEEN:
            actions.append(Seen(attempt.step))
    return actions
