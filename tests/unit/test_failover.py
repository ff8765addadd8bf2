"""Tests for the failover rules (omnirelay.domain.failover.decide): examples and hypothesis properties."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.domain.failover import (
    Action,
    CancelTimers,
    Context,
    Decision,
    Event,
    Expire,
    Final,
    Intermediate,
    PlanStep,
    Remember,
    Reported,
    Schedule,
    Seen,
    Start,
    Submit,
    SubmitStep,
    Submitted,
    decide,
)
from omnirelay.domain.message import MessageState, state_decoder, state_encoder

T0 = 1_700_000_000.0
PHONE = "+41793026727"
EMAIL = "jane@example.com"
SUCCESS_STATUS = "DELIVERED_TO_HANDSET"


def wa(validity: float = 60.0, address: str | None = PHONE, content: bool = True) -> PlanStep:
    return PlanStep("WHATSAPP", validity, address, content)


def sms(validity: float = 120.0, address: str | None = PHONE, content: bool = True) -> PlanStep:
    return PlanStep("SMS", validity, address, content)


def viber(validity: float = 90.0, address: str | None = PHONE, content: bool = True) -> PlanStep:
    return PlanStep("VIBER", validity, address, content)


def email(validity: float = 300.0, address: str | None = EMAIL, content: bool = True) -> PlanStep:
    return PlanStep("EMAIL", validity, address, content)


@dataclass
class Run:
    """Drives one message through decide, keeping the state and every decision."""

    plan: list[PlanStep]
    now: float = T0
    blocked_until: dict[str, float] = field(default_factory=dict)
    state: MessageState = field(default_factory=MessageState)
    decisions: list[Decision] = field(default_factory=list)

    def ctx(self) -> Context:
        return Context(now=self.now, plan=self.plan, blocked_until=dict(self.blocked_until))

    def send(self, event: Event, *, after: float = 1.0) -> list[Action]:
        self.now += after
        decision = decide(self.state, event, self.ctx())
        self.state = decision.state
        self.decisions.append(decision)
        return decision.actions

    def all_actions(self) -> list[Action]:
        return [a for d in self.decisions for a in d.actions]

    def attempts(self) -> list[tuple[int, str, str]]:
        return [(a.step, a.channel, a.state) for a in self.state.attempts]

    def history(self) -> str:
        return "\n".join(line.text for line in self.state.history)


def of_type(actions: list[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


# --- examples: the happy failover path ----------------------------------------------------------


def test_start_submits_first_step_with_expiry_timer() -> None:
    run = Run([wa(validity=60), sms()])
    actions = run.send(Start())
    assert actions == [Submit(0), Schedule(Expire(0), run.now + 60)]
    assert run.state.phase == "ACTIVE"
    assert run.state.step == 0
    assert run.state.channel == "WHATSAPP"
    assert run.state.sent_at == run.now
    assert run.attempts() == [(0, "WHATSAPP", "SUBMITTING")]


def test_whatsapp_rejected_fails_over_to_sms_which_is_delivered() -> None:
    run = Run([wa(), sms(validity=120)])
    run.send(Start())
    run.send(Submitted(0, provider_id="wamid.1"))
    assert run.attempts() == [(0, "WHATSAPP", "ACCEPTED")]

    actions = run.send(Reported(0, "REJECTED"))
    assert CancelTimers(0) in actions
    assert Intermediate(0) in actions
    # a rejection fails over at once: the next step is submitted in the same decision
    assert of_type(actions, Submit) == [Submit(1)]
    assert Schedule(Expire(1), run.now + 120) in actions
    assert of_type(actions, Final) == []
    assert run.state.phase == "ACTIVE"
    assert run.state.step == 1
    assert run.attempts() == [(0, "WHATSAPP", "REJECTED"), (1, "SMS", "SUBMITTING")]
    assert run.state.attempts[0].status == "REJECTED_DESTINATION"
    assert run.state.attempts[0].provider_id == "wamid.1"
    assert run.send(SubmitStep(1)) == []  # nothing is submitted twice

    run.send(Submitted(1, provider_id="sms-1"))
    actions = run.send(Reported(1, "DELIVERED"))
    assert of_type(actions, Final) == [Final(1)]
    assert CancelTimers(1) in actions
    assert run.state.phase == "DONE"
    assert run.state.status == SUCCESS_STATUS
    assert run.state.error == "NO_ERROR"
    assert run.state.channel == "SMS"
    assert run.state.done_at == run.now
    assert run.state.step == 1


def test_delivered_on_first_step_ends_message() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    actions = run.send(Reported(0, "DELIVERED"))
    assert of_type(actions, Final) == [Final(0)]
    assert of_type(actions, Schedule) == []
    assert run.state.phase == "DONE"
    assert (run.state.status, run.state.channel) == (SUCCESS_STATUS, "WHATSAPP")
    # nothing of the SMS step was ever attempted
    assert [a.step for a in run.state.attempts] == [0]


def test_seen_ends_message_as_delivered() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Reported(0, "SEEN"))
    assert run.state.phase == "DONE"
    assert run.state.status == SUCCESS_STATUS
    assert run.state.attempts[0].state == "SEEN"


def test_read_after_delivered_is_a_seen_report_and_never_goes_back() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Reported(0, "DELIVERED"))
    assert run.send(Reported(0, "SEEN")) == [Seen(0)]
    assert run.state.attempts[0].state == "SEEN"
    assert run.send(Reported(0, "DELIVERED")) == []  # out of order: delivered after read changes nothing
    assert run.send(Reported(0, "SEEN")) == []  # one seen report
    assert run.state.attempts[0].state == "SEEN"
    assert (run.state.status, run.state.phase) == (SUCCESS_STATUS, "DONE")


def test_read_before_delivered_finishes_with_a_seen_report() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    actions = run.send(Reported(0, "SEEN"))
    assert of_type(actions, Final) == [Final(0)] and of_type(actions, Seen) == [Seen(0)]
    assert run.send(Reported(0, "DELIVERED")) == []
    assert run.state.attempts[0].state == "SEEN"


# --- examples: retry ------------------------------------------------------------------------------


def test_retry_submits_the_same_step_again_within_its_validity() -> None:
    run = Run([wa(validity=60), sms()])
    run.send(Start())
    run.send(Submitted(0, "wamid.1"))
    assert run.send(Reported(0, "RETRY", detail="130429 throttled")) == [Submit(0)]  # no second expiry timer
    assert run.attempts() == [(0, "WHATSAPP", "SUBMITTING")]
    assert run.state.attempts[0].tries == 2
    assert "submitted again: 130429 throttled" in run.history()
    run.send(Submitted(0, "wamid.2"))
    actions = run.send(Expire(0), after=60)  # the first submission's validity still counts
    assert of_type(actions, Submit) == [] and run.state.step == 1


def test_retry_of_a_step_left_or_finished_is_ignored() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Reported(0, "REJECTED"))
    assert run.send(Reported(0, "RETRY")) == []
    run.send(Reported(1, "DELIVERED"))
    assert run.send(Reported(1, "RETRY")) == []
    assert [a.tries for a in run.state.attempts] == [1, 1]


# --- examples: expiry -----------------------------------------------------------------------------


def test_silence_fails_over_when_validity_runs_out() -> None:
    run = Run([viber(validity=60), sms()])
    run.send(Start())
    run.send(Submitted(0))
    actions = run.send(Expire(0), after=60)
    assert Schedule(SubmitStep(1), run.now) in actions
    assert Intermediate(0) in actions
    assert run.state.step == 1
    assert run.state.phase == "ACTIVE"
    assert run.state.attempts[0].state == "EXPIRED"
    assert run.state.attempts[0].status == "EXPIRED_EXPIRED"
    assert run.state.attempts[0].error == "EC_VALIDITY_EXPIRED"


def test_expire_for_a_step_already_reported_is_ignored() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Reported(0, "REJECTED"))
    before = run.state
    actions = run.send(Expire(0))
    assert actions == []
    assert run.state.step == 1
    assert run.attempts() == [(a.step, a.channel, a.state) for a in before.attempts]


def test_expire_after_delivery_changes_nothing() -> None:
    run = Run([sms()])
    run.send(Start())
    run.send(Reported(0, "DELIVERED"))
    done = run.state
    actions = run.send(Expire(0))
    assert actions == []
    assert (run.state.phase, run.state.status, run.state.done_at) == ("DONE", SUCCESS_STATUS, done.done_at)


# --- examples: the last step ----------------------------------------------------------------------


def test_last_step_failure_is_final_with_its_error() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Reported(0, "REJECTED"))
    run.send(SubmitStep(1))
    actions = run.send(Reported(1, "UNDELIVERABLE", error="EC_ABSENT_SUBSCRIBER_SM"))
    assert of_type(actions, Final) == [Final(1)]
    assert of_type(actions, Intermediate) == []
    assert run.state.phase == "DONE"
    assert run.state.status == "UNDELIVERABLE_NOT_DELIVERED"
    assert run.state.error == "EC_ABSENT_SUBSCRIBER_SM"
    assert run.state.channel == "SMS"
    assert run.state.step == 1


def test_last_step_expiry_is_final_expired() -> None:
    run = Run([sms(validity=30)])
    run.send(Start())
    actions = run.send(Expire(0), after=30)
    assert of_type(actions, Final) == [Final(0)]
    assert (run.state.status, run.state.error) == ("EXPIRED_EXPIRED", "EC_VALIDITY_EXPIRED")


def test_last_step_rejection_with_custom_error() -> None:
    run = Run([email()])
    run.send(Start())
    run.send(Reported(0, "UNDELIVERABLE", error="EC_HARD_BOUNCE"))
    assert run.state.phase == "DONE"
    assert (run.state.status, run.state.error, run.state.channel) == (
        "UNDELIVERABLE_NOT_DELIVERED",
        "EC_HARD_BOUNCE",
        "EMAIL",
    )


def test_failure_before_only_unusable_steps_is_final() -> None:
    run = Run([wa(), sms(address=None), email(content=False)])
    run.send(Start())
    actions = run.send(Reported(0, "REJECTED"))
    assert of_type(actions, Final) == [Final(0)]
    assert of_type(actions, Intermediate) == []
    assert run.state.phase == "DONE"
    assert run.state.channel == "WHATSAPP"
    assert run.state.status == "REJECTED_DESTINATION"
    assert [a.state for a in run.state.attempts] == ["REJECTED", "SKIPPED", "SKIPPED"]


# --- examples: states only move forward -----------------------------------------------------------


def test_late_report_after_final_is_history_only() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Expire(0), after=60)
    run.send(SubmitStep(1))
    run.send(Reported(1, "UNDELIVERABLE"))
    assert run.state.phase == "DONE"
    done = run.state
    lines = len(done.history)

    actions = run.send(Reported(0, "DELIVERED"))
    assert actions == []
    assert run.state.phase == "DONE"
    assert (run.state.status, run.state.error, run.state.channel, run.state.done_at, run.state.step) == (
        done.status,
        done.error,
        done.channel,
        done.done_at,
        done.step,
    )
    assert len(run.state.history) == lines + 1
    assert "late report" in run.state.history[-1].text
    # the expired attempt stays expired
    assert run.state.attempts[0].state == "EXPIRED"


def test_late_failure_after_success_is_history_only() -> None:
    run = Run([sms()])
    run.send(Start())
    run.send(Reported(0, "DELIVERED"))
    actions = run.send(Reported(0, "UNDELIVERABLE"))
    assert actions == []
    assert run.state.status == SUCCESS_STATUS
    assert run.state.attempts[0].state == "DELIVERED"
    assert "late report" in run.state.history[-1].text


def test_late_success_while_next_step_pending_wins_and_cancels_it() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Expire(0), after=60)
    assert run.attempts() == [(0, "WHATSAPP", "EXPIRED"), (1, "SMS", "PENDING")]

    actions = run.send(Reported(0, "SEEN"))
    assert of_type(actions, Final) == [Final(0)]
    assert run.state.phase == "DONE"
    assert run.state.step == 0
    assert run.state.channel == "WHATSAPP"
    assert run.state.status == SUCCESS_STATUS
    assert run.attempts() == [(0, "WHATSAPP", "SEEN"), (1, "SMS", "CANCELLED")]
    assert "cancelled" in run.history()

    # the SubmitStep job of the cancelled step comes later: nothing is submitted
    assert run.send(SubmitStep(1)) == []
    assert run.state.attempts[1].state == "CANCELLED"


def test_late_success_after_next_step_submitted_does_not_finish() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Reported(0, "REJECTED"))
    run.send(SubmitStep(1))
    lines = len(run.state.history)

    actions = run.send(Reported(0, "DELIVERED"))
    assert of_type(actions, Final) == []
    assert run.state.phase == "ACTIVE"
    assert run.state.step == 1
    assert run.attempts() == [(0, "WHATSAPP", "REJECTED"), (1, "SMS", "SUBMITTING")]
    assert len(run.state.history) == lines + 1
    assert "late report" in run.state.history[-1].text

    run.send(Reported(1, "DELIVERED"))
    assert (run.state.phase, run.state.channel) == ("DONE", "SMS")


def test_late_failure_while_next_step_pending_changes_nothing() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Expire(0), after=60)
    actions = run.send(Reported(0, "UNDELIVERABLE"))
    assert actions == []
    assert run.attempts() == [(0, "WHATSAPP", "EXPIRED"), (1, "SMS", "PENDING")]
    assert "late report" in run.state.history[-1].text


def test_report_for_step_never_submitted_does_not_finish_message() -> None:
    """A report naming the pending (never submitted) step is not a late success of an earlier step."""
    run = Run([wa(), sms()])
    run.send(Start())
    run.send(Reported(0, "UNDELIVERABLE"))
    assert run.attempts()[-1] == (1, "SMS", "PENDING")

    actions = run.send(Reported(1, "DELIVERED"))
    assert of_type(actions, Final) == []
    assert run.state.phase == "ACTIVE"
    assert run.attempts()[-1] == (1, "SMS", "PENDING")
    assert run.send(SubmitStep(1))[0] == Submit(1)


def test_start_and_submit_step_are_idempotent() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    assert run.send(Start()) == []
    run.send(Reported(0, "UNDELIVERABLE"))
    assert run.send(SubmitStep(1))[0] == Submit(1)
    assert run.send(SubmitStep(1)) == []
    assert run.send(SubmitStep(0)) == []
    assert of_type(run.all_actions(), Submit) == [Submit(0), Submit(1)]


# --- examples: capability memory ------------------------------------------------------------------


def test_whatsapp_not_a_user_is_remembered() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    actions = run.send(Reported(0, "REJECTED", not_a_user=True))
    remembers = of_type(actions, Remember)
    assert remembers == [Remember("WHATSAPP", run.now + 7 * 86400)]
    assert run.state.attempts[0].error == "EC_UNKNOWN_USER"
    assert "remembered" in run.history()
    assert run.state.step == 1


def test_remember_uses_context_remember_seconds() -> None:
    plan = [wa(), sms()]
    d = decide(MessageState(), Start(), Context(now=T0, plan=plan))
    d = decide(d.state, Reported(0, "REJECTED", not_a_user=True), Context(now=T0 + 5, plan=plan, remember_seconds=60))
    assert Remember("WHATSAPP", T0 + 5 + 60) in d.actions


def test_rejection_without_not_a_user_is_not_remembered() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    actions = run.send(Reported(0, "REJECTED"))
    assert of_type(actions, Remember) == []


def test_remembered_address_skips_whatsapp_step() -> None:
    run = Run([wa(), sms()], blocked_until={"WHATSAPP": T0 + 3600})
    actions = run.send(Start())
    assert actions == [Submit(1), Schedule(Expire(1), run.now + 120)]
    assert run.state.step == 1
    assert run.state.channel == "SMS"
    assert run.attempts() == [(0, "WHATSAPP", "SKIPPED"), (1, "SMS", "SUBMITTING")]
    assert "capability memory" in (run.state.attempts[0].note or "")
    assert "skipped" in run.history()
    assert "capability memory" in run.history()


def test_expired_memory_does_not_skip() -> None:
    run = Run([wa(), sms()], blocked_until={"WHATSAPP": T0 - 1})
    assert run.send(Start())[0] == Submit(0)


def test_memory_of_another_channel_does_not_skip_whatsapp() -> None:
    run = Run([wa(), sms()], blocked_until={"VIBER": T0 + 3600})
    assert run.send(Start())[0] == Submit(0)


def test_remembered_whatsapp_only_step_ends_as_not_a_user() -> None:
    run = Run([wa()], blocked_until={"WHATSAPP": T0 + 3600})
    actions = run.send(Start())
    assert of_type(actions, Submit) == []
    assert of_type(actions, Final) == [Final(0)]
    assert run.state.phase == "DONE"
    assert run.state.status == "REJECTED_DESTINATION"
    assert run.state.error == "EC_UNKNOWN_USER"
    assert run.state.channel == "WHATSAPP"


def test_no_intermediate_report_when_only_remembered_steps_remain() -> None:
    """Failing over onto a step capability memory skips is no failover: the message ends, no intermediate."""
    run = Run([sms(), wa()], blocked_until={"WHATSAPP": T0 + 3600})
    run.send(Start())
    actions = run.send(Reported(0, "UNDELIVERABLE"))
    assert of_type(actions, Final) == [Final(0)]
    assert of_type(actions, Intermediate) == []


# --- examples: unusable steps ---------------------------------------------------------------------


def test_steps_without_address_or_content_are_skipped() -> None:
    run = Run([wa(address=None), viber(content=False), email()])
    actions = run.send(Start())
    assert actions[0] == Submit(2)
    assert run.attempts() == [(0, "WHATSAPP", "SKIPPED"), (1, "VIBER", "SKIPPED"), (2, "EMAIL", "SUBMITTING")]
    assert "no address" in (run.state.attempts[0].note or "")
    assert "no content" in (run.state.attempts[1].note or "")


def test_unusable_step_skipped_during_failover() -> None:
    run = Run([wa(), sms(address=None), email()])
    run.send(Start())
    actions = run.send(Reported(0, "UNDELIVERABLE"))
    assert Schedule(SubmitStep(2), run.now) in actions
    assert run.state.step == 2
    assert run.attempts() == [(0, "WHATSAPP", "UNDELIVERABLE"), (1, "SMS", "SKIPPED"), (2, "EMAIL", "PENDING")]


def test_no_usable_step_is_final_rejected() -> None:
    run = Run([sms(address=None), email(address=None)])
    actions = run.send(Start())
    assert of_type(actions, Submit) == []
    assert of_type(actions, Final) == [Final(run.state.step)]
    assert run.state.phase == "DONE"
    assert run.state.status == "REJECTED_DESTINATION"
    assert run.state.done_at == run.now
    assert "no usable step" in [a.note for a in run.state.attempts]


def test_events_before_start_are_ignored() -> None:
    run = Run([sms()])
    for event in (SubmitStep(0), Submitted(0), Reported(0, "DELIVERED"), Expire(0)):
        assert run.send(event) == []
        assert run.state.phase == "WAITING"
    assert run.send(Start())[0] == Submit(0)


def test_decide_does_not_mutate_input() -> None:
    run = Run([wa(), sms()])
    run.send(Start())
    before = state_encoder.encode(run.state)
    decide(run.state, Reported(0, "REJECTED", not_a_user=True), run.ctx())
    assert state_encoder.encode(run.state) == before


# --- properties -----------------------------------------------------------------------------------

CHANNELS = {"WHATSAPP": PHONE, "SMS": PHONE, "VIBER": PHONE, "EMAIL": EMAIL}
OUTCOMES = ["DELIVERED", "SEEN", "UNDELIVERABLE", "REJECTED", "EXPIRED"]


@st.composite
def plans(draw: st.DrawFn) -> list[PlanStep]:
    channels = draw(st.lists(st.sampled_from(sorted(CHANNELS)), min_size=1, max_size=4))
    steps = []
    for channel in channels:
        has_address = draw(st.sampled_from([True, True, False]))
        has_content = draw(st.sampled_from([True, True, True, False]))
        validity = draw(st.sampled_from([30.0, 60.0, 3600.0, 48 * 3600.0]))
        steps.append(PlanStep(channel, validity, CHANNELS[channel] if has_address else None, has_content))
    return steps


def events(n_steps: int, current: int = -1) -> st.SearchStrategy[Event]:
    """Any event for any step of the plan, with steps near the current one drawn more often."""
    near = [i for i in (current - 1, current, current + 1) if 0 <= i < n_steps]
    k = st.integers(min_value=0, max_value=n_steps - 1)
    if near:
        k = st.one_of(k, st.sampled_from(near))
    return st.one_of(
        st.just(Start()),
        st.builds(SubmitStep, k),
        st.builds(Submitted, k, st.one_of(st.none(), st.just("pid"))),
        st.builds(
            Reported,
            k,
            st.sampled_from([*OUTCOMES, "RETRY"]),
            st.one_of(st.none(), st.just("EC_ABSENT_SUBSCRIBER_SM")),
            st.booleans(),
        ),
        st.builds(Expire, k),
    )


Scenario = tuple[list[PlanStep], dict[str, float]]


@st.composite
def scenarios(draw: st.DrawFn, remembered: bool = False) -> Scenario:
    """A plan, and maybe capability memory of WhatsApp (always a still valid one when ``remembered``)."""
    plan = draw(plans())
    blocked: dict[str, float] = {}
    if remembered:
        blocked["WHATSAPP"] = T0 + 30 * 86400
    elif draw(st.booleans()):
        blocked["WHATSAPP"] = T0 + draw(st.sampled_from([-10.0, 10.0, 86400.0]))
    return plan, blocked


def event_stream(
    data: st.DataObject, plan: list[PlanStep], current: Callable[[], int]
) -> Iterator[tuple[float, Event]]:
    """Random (delay, event) pairs: Start first half the time, then up to 30 events drawn one at a time.

    Drawn lazily, so that the steps near the message's ``current()`` step come up more often.
    """
    if data.draw(st.booleans(), label="start first"):
        yield 0.0, Start()
    for _ in range(data.draw(st.integers(min_value=1, max_value=30), label="length")):
        delay = data.draw(st.sampled_from([0.0, 1.0, 30.0, 100.0]), label="delay")
        yield delay, data.draw(events(len(plan), current()), label="event")


def _finals(actions: list[Action]) -> list[Final]:
    return [a for a in actions if isinstance(a, Final)]


PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(scenarios(), st.data())
def test_property_invariants_hold_for_random_event_sequences(scenario: Scenario, data: st.DataObject) -> None:
    plan, blocked = scenario
    state = MessageState()
    now = T0
    where = {"step": state.step}
    finals = 0
    submits: Counter[int] = Counter()
    done: MessageState | None = None

    for delta, event in event_stream(data, plan, lambda: where["step"]):
        now += delta
        ctx = Context(now=now, plan=plan, blocked_until=dict(blocked))
        before_bytes = state_encoder.encode(state)
        decision = decide(state, event, ctx)
        # decide never mutates its input
        assert state_encoder.encode(state) == before_bytes, event
        new, actions = decision.state, decision.actions
        # the new state survives a round trip through its stored form
        assert state_decoder.decode(state_encoder.encode(new)) == new

        if done is not None:
            # once DONE: stays DONE, the outcome never changes, nothing more is done
            assert new.phase == "DONE", event
            assert (new.status, new.error, new.channel, new.done_at, new.step) == (
                done.status,
                done.error,
                done.channel,
                done.done_at,
                done.step,
            ), event
            assert not [a for a in actions if isinstance(a, Submit | Final | Intermediate | Schedule)], event
            assert len(new.history) >= len(state.history)

        # the step index only moves forward, except a late success finishing on an earlier step
        if new.step < state.step:
            hypothesis.event("late success on an earlier step")
            assert isinstance(event, Reported) and event.outcome in ("DELIVERED", "SEEN"), event
            assert new.phase == "DONE" and new.status == SUCCESS_STATUS
            assert _finals(actions) == [Final(new.step)]
            assert any(a.step == state.step and a.state == "CANCELLED" for a in new.attempts)

        # phases only move forward
        order = {"WAITING": 0, "ACTIVE": 1, "DONE": 2}
        assert order[new.phase] >= order[state.phase]

        step_finals = _finals(actions)
        finals += len(step_finals)
        if step_finals:
            assert state.phase != "DONE" and new.phase == "DONE"
            assert step_finals == [Final(new.step)]
        if new.phase == "DONE" and state.phase != "DONE":
            assert len(step_finals) == 1
            assert new.done_at == now

        retry = isinstance(event, Reported) and event.outcome == "RETRY"
        if retry and actions:
            # a retry submits the current step again, under the validity timer it already has
            assert actions == [Submit(event.step)] and event.step == state.step and state.phase == "ACTIVE"
        for action in actions:
            if isinstance(action, Submit) and not retry:
                submits[action.step] += 1
                step = plan[action.step]
                # only usable, not remembered steps are submitted, and each gets its validity timer
                assert step.address is not None and step.has_content
                assert not blocked.get(step.channel, 0.0) > now
                assert Schedule(Expire(action.step), now + step.validity_s) in actions
            if isinstance(action, Remember):
                assert isinstance(event, Reported) and event.not_a_user
                assert action.until > now

        history_grew = len(new.history) >= len(state.history)
        assert history_grew
        assert new.history[: len(state.history)] == state.history  # history is append-only

        state = new
        where["step"] = new.step
        if new.phase == "DONE" and done is None:
            done = new

    hypothesis.event(f"ends {state.phase} {state.status}")
    assert finals <= 1
    if state.phase == "DONE":
        assert finals == 1
    assert all(count == 1 for count in submits.values()), submits


@PROPERTY_SETTINGS
@given(scenarios(), st.data())
def test_property_success_is_only_final_on_a_submitted_step(scenario: Scenario, data: st.DataObject) -> None:
    """A message ends delivered only on a step that was handed to its channel."""
    plan, blocked = scenario
    state = MessageState()
    now = T0
    submitted: set[int] = set()
    where = {"step": state.step}
    for delta, event in event_stream(data, plan, lambda: where["step"]):
        now += delta
        decision = decide(state, event, Context(now=now, plan=plan, blocked_until=dict(blocked)))
        submitted.update(a.step for a in decision.actions if isinstance(a, Submit))
        state = decision.state
        where["step"] = state.step
        if state.phase == "DONE" and state.status == SUCCESS_STATUS:
            assert state.step in submitted, (state.step, submitted)


@PROPERTY_SETTINGS
@given(st.one_of(scenarios(), scenarios(remembered=True)), st.data())
def test_property_intermediate_only_when_the_message_goes_on(scenario: Scenario, data: st.DataObject) -> None:
    """An intermediate report is written only when a next step is really going to be tried."""
    plan, blocked = scenario
    state = MessageState()
    now = T0
    where = {"step": state.step}
    for delta, event in event_stream(data, plan, lambda: where["step"]):
        now += delta
        decision = decide(state, event, Context(now=now, plan=plan, blocked_until=dict(blocked)))
        state = decision.state
        where["step"] = state.step
        if of_type(decision.actions, Intermediate):
            assert state.phase == "ACTIVE", decision.actions
            assert (
                Schedule(SubmitStep(state.step), now) in decision.actions  # after silence or a failure report
                or Submit(state.step) in decision.actions  # after a rejection, at once
            )


@PROPERTY_SETTINGS
@given(plans(), st.data())
def test_property_well_behaved_channel_always_finishes(plan: list[PlanStep], data: st.DataObject) -> None:
    """Driving every step to a report or an expiry always ends the message with exactly one Final."""
    state = MessageState()
    now = T0
    actions: list[Action] = []
    pending: list[Event] = [Start()]
    all_actions: list[Action] = []
    for _ in range(4 * len(plan) + 4):
        if not pending:
            break
        event = pending.pop(0)
        now += 1
        decision = decide(state, event, Context(now=now, plan=plan))
        state, actions = decision.state, decision.actions
        all_actions.extend(actions)
        for action in actions:
            if isinstance(action, Schedule) and isinstance(action.event, SubmitStep):
                pending.append(action.event)
            if isinstance(action, Submit):
                if data.draw(st.booleans(), label=f"report step {action.step}"):
                    outcome = data.draw(st.sampled_from(OUTCOMES), label="outcome")
                    pending.append(Reported(action.step, outcome))
                else:
                    pending.append(Expire(action.step))
    assert state.phase == "DONE"
    assert len(_finals(all_actions)) == 1
    usable = [i for i, s in enumerate(plan) if s.address is not None and s.has_content]
    submitted = [a.step for a in all_actions if isinstance(a, Submit)]
    assert submitted == sorted(set(submitted))
    assert set(submitted) <= set(usable)
    if state.status == SUCCESS_STATUS:
        assert state.step == submitted[-1]
    elif usable:
        # a failure is final only once every usable step was tried
        assert submitted == usable


@pytest.mark.parametrize("outcome", ["UNDELIVERABLE", "REJECTED", "EXPIRED"])
def test_every_failure_outcome_fails_over(outcome: str) -> None:
    run = Run([viber(), sms()])
    run.send(Start())
    run.send(Reported(0, outcome))
    assert run.state.step == 1
    assert run.state.phase == "ACTIVE"
    assert run.state.attempts[0].state == outcome
