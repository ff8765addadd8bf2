"""The engine: claims due work in batches, lets :func:`~omnirelay.domain.failover.decide` rule on it, submits
steps to their channels and records what comes back.

One cycle is one transaction: it records the channel answers received since the last cycle, takes due
jobs, decides, and stores the new states. Instant channels (the sandbox) answer inside that transaction.
Steps for other channels are stored as SUBMITTING and submitted after the commit, in the background, so a
crash never submits one twice (its validity timer fails it over instead); each answer is recorded by the
next cycle as soon as its channel has it (not when the channel's whole batch is answered: a crash while one
submission waits for its peer keeps the provider ids of the others), answers that arrive together in one
transaction; outcomes that come later (delivery receipts, status webhooks) are stored as jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from omnirelay.connectors.base import Connector, InstantConnector, LaterReport, SubmitResult
from omnirelay.domain import catalogue, rollups
from omnirelay.domain.channels import CONTENT_FIELDS, Channel, parse_channel
from omnirelay.domain.dates import format_ts
from omnirelay.domain.delivery import Submission
from omnirelay.domain.failover import (
    CancelTimers,
    Context,
    Event,
    Final,
    Intermediate,
    PlanStep,
    Remember,
    Reported,
    Schedule,
    Seen,
    Submit,
    Submitted,
    decide_in_place,
)
from omnirelay.domain.lifecycle import NOT_TRIED, JobKind, Outcome, Phase
from omnirelay.domain.message import Attempt, MessageState, state_decoder, state_encoder
from omnirelay.domain.model import SeenReport, SeenReports, To
from omnirelay.domain.reports import LogColumns, Tariffs, build_report, log_columns, log_columns_at
from omnirelay.domain.request import RequestOptions, request_decoder
from omnirelay.domain.validation import address_for, capability_key, has_content, main_address
from omnirelay.engine.health import Health
from omnirelay.metrics import Metrics
from omnirelay.store.base import Change, Store, Work
from omnirelay.store.errors import UNAVAILABLE, Outage, describe

log = logging.getLogger("omnirelay.engine")

_event_decoder = msgspec.json.Decoder(Event)
_event_encoder = msgspec.json.Encoder()
_to_decoder = msgspec.json.Decoder(To)
_report_encoder = msgspec.json.Encoder()
_blocked_decoder = msgspec.json.Decoder(dict[str, float])


@dataclass(frozen=True)
class EngineSettings:
    """Tunables of the engine."""

    batch_size: int = 500
    remember_seconds: float = 7 * 86400
    idle_poll_seconds: float = 0.5
    max_in_flight: int = 5000
    """Submissions handed to connectors and not answered yet, above which the engine stops claiming."""
    drain_seconds: float = 5.0
    """On shutdown, how long to wait for connectors' answers to submissions already made."""
    rollups: bool = True
    """Keep the console overview's rollups up to date (off only to measure what that costs: bench/)."""


@dataclass(frozen=True, slots=True)
class _Step:
    """A scenario step of a request: what is the same for each of the request's messages."""

    channel: str
    kind: Channel
    validity_s: float
    has_content: bool
    sender: str | None


@dataclass(frozen=True, slots=True)
class _Request:
    """A request's payload as the engine uses it, decoded once for all its messages."""

    payload: bytes
    content: dict[str, Any]
    options: RequestOptions
    steps: list[_Step]
    notify_url: str | None
    """Where to push reports; None when they are not pushed."""
    notify_content_type: str
    intermediate: bool
    """Whether intermediate reports are pushed too."""

    @classmethod
    def of(cls, payload: bytes) -> _Request:
        """Decode a stored request payload."""
        decoded = request_decoder.decode(payload)
        content, options = decoded.content, decoded.options
        steps = []
        for step in decoded.steps:
            kind = parse_channel(step.channel)
            steps.append(
                _Step(
                    channel=step.channel,
                    kind=kind,
                    validity_s=float(step.validity_s),
                    has_content=has_content(content.get(CONTENT_FIELDS[kind])),
                    sender=step.sender,
                )
            )
        pushed = bool(options.notifyUrl) and options.notify is not False
        return cls(
            payload=payload,
            content=content,
            options=options,
            steps=steps,
            notify_url=options.notifyUrl if pushed else None,
            notify_content_type=options.notifyContentType or "application/json",
            intermediate=bool(options.intermediateReport),
        )


@dataclass(slots=True)
class _Message:
    """A message as one cycle sees it."""

    work: Work
    to: To
    request: _Request
    plan: list[PlanStep]


#: Metric counts of one cycle, by metric name and labels: added to the metrics once per cycle, not per event.
_Counts = dict[tuple[str, str, str], int]


def _count(counts: _Counts, name: str, first: str, second: str) -> None:
    key = (name, first, second)
    counts[key] = counts.get(key, 0) + 1


def _reported_attempt(state: MessageState, step: int) -> Attempt:
    """The attempt of ``step`` that a report tells of: its latest that was made."""
    for attempt in reversed(state.attempts):
        if attempt.step == step and attempt.state not in NOT_TRIED:
            return attempt
    raise LookupError(f"no attempt of step {step} was made")


def _tries(state: MessageState, step: int) -> int:
    """The submissions of ``step`` so far (its latest attempt's)."""
    for attempt in reversed(state.attempts):
        if attempt.step == step:
            return attempt.tries
    raise LookupError(f"no attempt of step {step}")


class Engine:
    """Walks messages through their scenarios."""

    def __init__(
        self,
        store: Store,
        channels: dict[str, Connector],
        tariffs: Tariffs,
        settings: EngineSettings | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.channels = channels
        self._instant = {name: c for name, c in channels.items() if isinstance(c, InstantConnector)}
        self.tariffs = tariffs
        self.settings = settings or EngineSettings()
        self._wake = asyncio.Event()
        self._requests: dict[int, _Request] = {}
        self._connectors: dict[str, str] = {}
        self._events: list[tuple[int, bytes]] = []
        self._later: list[tuple[int, JobKind, int, float, bytes]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._in_flight_count = 0
        """Submissions handed to connectors and not answered yet."""
        self._room = asyncio.Event()
        """Set when ``_in_flight_count`` fell below ``max_in_flight``."""
        self.on_progress: Callable[[], None] = lambda: None
        """Called after each cycle that did something (the notifier's wake-up)."""
        self.health = Health()
        """What the connectors answered, for the console's connector health."""

    def _connector(self, channel: str) -> str:
        name = self._connectors.get(channel)
        if name is None:
            connector = self.channels.get(channel)
            name = self._connectors[channel] = type(connector).__name__.lower() if connector is not None else "none"
        return name

    def wake(self) -> None:
        """New work was stored: look for it now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Cycle until cancelled; on cancellation, record the channel answers already received."""
        outage = Outage("engine")
        try:
            while True:
                try:  # the idle wait reads the store too: an outage there must not end the engine
                    busy = await self.cycle()
                    outage.ended()
                    if not busy:
                        await self._idle()
                except asyncio.CancelledError:
                    raise
                except UNAVAILABLE as exc:
                    outage.began(exc)
                    await asyncio.sleep(1.0)
                except Exception:
                    log.exception("engine cycle failed; retrying")
                    await asyncio.sleep(1.0)
        finally:
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        """Wait (a while) for the connectors' answers to submissions already made, and record the answers."""
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.settings.drain_seconds)
        if self._events or self._later:
            await self.store.engine_step(time.time(), 0, self._events, self._decide, self._later)
            self._events, self._later = [], []

    async def _idle(self) -> None:
        due = await self.store.next_due()
        wait = self.settings.idle_poll_seconds
        if due is not None:
            wait = max(0.0, min(wait, due - time.time()))
        self._wake.clear()
        if self._events or self._later:  # answered while next_due ran: record them now
            return
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def cycle(self) -> bool:
        """One transaction (record the last answers, claim due jobs, decide), then submit what it chose.

        Returns True when there may be more work right away.
        """
        events, later = self._events, self._later
        self._events, self._later = [], []
        try:
            (_, recorded_subs), (claimed, claimed_subs) = await self.store.engine_step(
                time.time(), self.settings.batch_size, events, self._decide, later
            )
        except BaseException:  # not stored (the database is away): keep the answers for the next try
            self._events, self._later = events + self._events, later + self._later
            raise
        submissions = recorded_subs + claimed_subs
        if submissions:
            # in the background: a slow or throttled connector must not hold up the other channels' messages
            self._in_flight_count += len(submissions)
            task = asyncio.create_task(self._submit(submissions))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        if claimed or events:
            self.on_progress()
        while self._in_flight_count >= self.settings.max_in_flight:
            self._room.clear()
            await self._room.wait()
        return claimed >= self.settings.batch_size or bool(self._events or self._later)

    async def wait_submissions(self) -> None:
        """Wait until every submission handed to a connector has its answer (waiting to be recorded)."""
        while self._in_flight:
            await asyncio.wait(self._in_flight)

    # --- deciding (runs inside the store's transaction) -----------------------------------------

    def _decide(self, work: list[Work]) -> tuple[list[Change], tuple[int, list[Submission]]]:
        now = time.time()
        by_message: dict[int, list[Work]] = defaultdict(list)
        for item in work:
            by_message[item.message].append(item)
        messages = {m: self._message(items[0]) for m, items in by_message.items()}
        changes: list[Change] = []
        submissions: list[Submission] = []
        counts: _Counts = {}
        try:
            self._decide_messages(by_message, messages, now, changes, submissions, counts)
        finally:  # what was counted, also when a message failed (as counting each at once would have)
            if self.metrics is not None:
                for (name, first, second), n in counts.items():
                    self.metrics.of(getattr(self.metrics, name), first, second).inc(n)
        return changes, (len(work), submissions)

    def _decide_messages(
        self,
        by_message: dict[int, list[Work]],
        messages: dict[int, _Message],
        now: float,
        changes: list[Change],
        submissions: list[Submission],
        counts: _Counts,
    ) -> None:
        """Decide each message on its events (and on those its instant channels answer at once)."""
        for m, items in by_message.items():
            msg = messages[m]
            state = state_decoder.decode(items[-1].state)
            started_before = state.phase != Phase.WAITING
            done_before = state.phase == Phase.DONE
            shown = (state.step, state.channel)
            ctx = Context(
                now=now,
                plan=msg.plan,
                blocked_until=_blocked_decoder.decode(msg.work.blocked) if msg.work.blocked else {},
                remember_seconds=self.settings.remember_seconds,
            )
            change = Change(
                message=m,
                account_id=msg.work.account_id,
                state=b"",
                status_group=catalogue.PENDING_GROUP,
                channel=None,
                done_at=None,
            )
            pending = [_event_decoder.decode(item.event) for item in reversed(items)]  # a stack: next is last
            while pending:
                event = pending.pop()
                if type(event) is Submitted:
                    channel = msg.plan[event.step].channel
                    change.submitted.append((event.step, channel, event.provider_id))
                    _count(counts, "submits", channel, self._connector(channel))
                elif type(event) is Reported:
                    _count(counts, "outcomes", msg.plan[event.step].channel, event.outcome)
                # the state was decoded for this message alone: decide may move it on in place
                actions = decide_in_place(state, event, ctx)
                pending.extend(reversed(self._act(msg, state, actions, change, submissions, counts, now)))
            # Validity timers are stored only with a submission, which starts the message: one that was waiting
            # until this transaction has none stored to delete (those it made here are dropped in _act).
            change.cancel_expiry = change.cancel_expiry and started_before
            change.state = state_encoder.encode(state)
            change.status_group = (
                catalogue.status(state.status).groupId if state.phase == Phase.DONE else catalogue.PENDING_GROUP
            )
            change.channel = state.channel
            change.done_at = state.done_at
            if state.phase == Phase.DONE and not done_before and self.settings.rollups:
                change.rollup = rollups.finished(
                    msg.work.account_id, msg.work.created_at, state, change.status_group, change.cost
                )
            if not started_before or (state.step, state.channel) != shown:  # a step the stored columns do not show
                change.columns = _log_columns(msg, state, self.tariffs)
            changes.append(change)

    def _message(self, work: Work) -> _Message:
        request = self._requests.get(work.request_id)
        # the same payload is checked as well: SQLite gives a purged request's id to the next request
        if request is None or request.payload != work.payload:
            request = _Request.of(work.payload)
            if len(self._requests) > 10_000:
                self._requests.clear()
            self._requests[work.request_id] = request
        to = _to_decoder.decode(work.to_json)
        plan = [PlanStep(s.channel, s.validity_s, address_for(s.kind, to), s.has_content) for s in request.steps]
        return _Message(work, to, request, plan)

    def _act(
        self,
        msg: _Message,
        state: MessageState,
        actions: list[Any],
        change: Change,
        submissions: list[Submission],
        counts: _Counts,
        now: float,
    ) -> list[Event]:
        """Turn the actions into rows to write and steps to submit; returns the events that follow at once
        (the answers of instant channels, which decide within this transaction)."""
        request = msg.request
        follow: list[Event] = []
        for action in actions:
            kind = type(action)
            if kind is Schedule:
                event = action.event
                change.jobs.append((event.job_kind, getattr(event, "step", 0), action.at, _event_encoder.encode(event)))
            elif kind is Submit:
                step = msg.plan[action.step]
                assert step.address is not None
                submission = Submission(
                    message=msg.work.message,
                    step=action.step,
                    account_id=msg.work.account_id,
                    message_id=msg.work.message_id,
                    channel=step.channel,
                    sender=request.steps[action.step].sender,
                    address=step.address,
                    content=request.content,
                    validity_s=step.validity_s,
                    tries=_tries(state, action.step),
                )
                instant = self._instant.get(step.channel)
                if instant is not None:
                    result = instant.decide_now(submission)
                    follow.append(Submitted(action.step, result.provider_id))
                    for r in result.reports:
                        answer = Reported(action.step, r.outcome, r.error, r.not_a_user, r.detail)
                        if r.after_s <= 0:
                            follow.append(answer)
                        else:
                            change.jobs.append(
                                (JobKind.REPORT, action.step, now + r.after_s, _event_encoder.encode(answer))
                            )
                else:
                    submissions.append(submission)
            elif kind is CancelTimers:
                change.cancel_expiry = True  # the stored timers
                change.jobs = [job for job in change.jobs if job[0] != JobKind.EXPIRE]  # and those of this transaction
            elif kind is Final or kind is Intermediate:
                self._report(msg, state, action.step, kind is Final, change, counts, now)
            elif kind is Seen:
                if request.notify_url is not None:
                    seen = SeenReport(
                        messageId=msg.work.message_id,
                        from_=request.steps[action.step].sender,
                        to=msg.plan[action.step].address or main_address(msg.to) or "",
                        sentAt=format_ts(state.sent_at) if state.sent_at else None,
                        sendAt=format_ts(state.sent_at) if state.sent_at else None,
                        seenAt=format_ts(now),
                    )
                    change.webhooks.append(
                        (
                            f"{msg.work.account_id}.{msg.work.message_id}.seen",
                            request.notify_url,
                            "application/json",
                            _report_encoder.encode(SeenReports([seen])),
                        )
                    )
            elif kind is Remember:
                remembered = capability_key(msg.to)
                if remembered is not None:
                    change.remember.append((action.channel, remembered, action.until))
        return follow

    def _report(
        self, msg: _Message, state: MessageState, step: int, final: bool, change: Change, counts: _Counts, now: float
    ) -> None:
        """The final report of the message (to be pulled, and pushed when asked for), or the intermediate report
        of a step it failed over from (pushed when asked for)."""
        request = msg.request
        attempt = _reported_attempt(state, step)
        push = request.notify_url is not None and (final or request.intermediate)
        if not (final or push):  # an intermediate report that goes nowhere: only counted
            _count(counts, "failovers", attempt.channel, str(step + 1))
            return
        report = build_report(
            message_id=msg.work.message_id,
            bulk_id=msg.work.bulk_id,
            attempt=attempt,
            address=msg.plan[step].address or main_address(msg.to) or "",
            state=state,
            content=request.content,
            callback_data=request.options.callbackData,
            tariffs=self.tariffs,
            now=now,
        )
        body = _report_encoder.encode(report)
        if final:
            _count(counts, "finals", attempt.channel, report.status.name)
            change.report = (msg.work.message_id, msg.work.bulk_id, attempt.channel, body)
            change.cost = report.price.pricePerMessage if report.price is not None else 0.0
        else:
            _count(counts, "failovers", attempt.channel, str(step + 1))
        if push:
            assert request.notify_url is not None
            report_id = f"{msg.work.account_id}.{msg.work.message_id}." + ("final" if final else f"step{step + 1}")
            # the body of Reports([report]), without encoding the report a second time
            change.webhooks.append(
                (report_id, request.notify_url, request.notify_content_type, b'{"results":[' + body + b"]}")
            )

    # --- submitting -----------------------------------------------------------------------------

    async def _submit(self, submissions: list[Submission]) -> None:
        """Hand the steps to their channels, each channel's batch at once."""
        by_channel: dict[str, list[Submission]] = defaultdict(list)
        for sub in submissions:
            by_channel[sub.channel].append(sub)
        await asyncio.gather(*(self._submit_to(c, b) for c, b in by_channel.items()))

    async def _submit_to(self, channel_name: str, batch: list[Submission]) -> None:
        """Submit one channel's batch; each answer is queued for the next cycle as soon as the channel has it."""
        unanswered = dict(enumerate(batch))

        def answered(index: int, result: SubmitResult) -> None:
            sub = unanswered.pop(index, None)
            if sub is not None:  # a second answer for the same submission is ignored
                self._answered(sub, result)

        try:
            channel = self.channels.get(channel_name)
            if channel is None:
                refused = SubmitResult(None, [_refusal("no connector is configured for this channel")])
                for i in list(unanswered):
                    answered(i, refused)
                return
            try:
                results = await channel.submit(batch, answered)
            except Exception as exc:  # a broken connector must not stall other channels
                log.exception("channel %s failed to submit %d messages", channel_name, len(batch))
                refused = SubmitResult(None, [_refusal(f"connector error: {exc}")])
                for i in list(unanswered):
                    answered(i, refused)
                return
            for i, result in enumerate(results):  # those the channel did not hand to ``answered``
                answered(i, result)
        finally:
            if unanswered:  # cancelled: nothing to record, but no longer in flight
                self._in_flight_count -= len(unanswered)
                self._made_room()

    def _answered(self, sub: Submission, result: SubmitResult) -> None:
        """Queue a submission's answer as events for the next cycle, and wake the engine to record it."""
        self.health.observe(sub.channel, result)
        self._events.append((sub.message, _event_encoder.encode(Submitted(sub.step, result.provider_id))))
        if result.reports:
            now = time.time()
            for r in result.reports:
                event = _event_encoder.encode(Reported(sub.step, r.outcome, r.error, r.not_a_user, r.detail))
                if r.after_s <= 0:
                    self._events.append((sub.message, event))
                else:
                    self._later.append((sub.message, JobKind.REPORT, sub.step, now + r.after_s, event))
        self._in_flight_count -= 1
        self._made_room()
        self.wake()

    def _made_room(self) -> None:
        if self._in_flight_count < self.settings.max_in_flight:
            self._room.set()


def _log_columns(msg: _Message, state: MessageState, tariffs: Tariffs) -> LogColumns:
    """What GET /omni/1/logs filters on, for the step its entry shows (the current one; the first before any)."""
    steps = msg.request.steps
    index = state.step if 0 <= state.step < len(steps) else 0
    if not steps:
        return log_columns(state.channel, None, msg.to, tariffs)
    step = steps[index]
    if state.channel is None or state.channel == step.channel:  # the plan has the step's address already
        return log_columns_at(msg.plan[index].address or main_address(msg.to) or "", step.sender, tariffs)
    return log_columns(state.channel, step.sender, msg.to, tariffs)


def _refusal(detail: str) -> LaterReport:
    return LaterReport(0.0, Outcome.REJECTED, "EC_NOTSUBMITTEDTOGMSC", detail=detail)


async def purge_forever(store: Store, retention_s: float, every_s: float = 60.0, batch: int = 5000) -> None:
    """Remove finished messages older than ``retention_s`` (their logs, reports and requests) every ``every_s``."""
    while True:
        try:
            while await store.purge(time.time() - retention_s, batch) >= batch:
                await asyncio.sleep(0)  # let the engine's transactions in between
        except asyncio.CancelledError:
            raise
        except UNAVAILABLE as exc:
            log.warning("purge: the database cannot serve now (%s); trying again in %g s", describe(exc), every_s)
        except Exception:
            log.exception("purge failed; retrying later")
        await asyncio.sleep(every_s)
