"""Tests for the lifecycle types (omnirelay.domain.lifecycle), the stored request (omnirelay.domain.request) and
the package's class names: what is stored must not change when code is renamed."""

from __future__ import annotations

import ast
import typing
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest

from omnirelay.domain import failover
from omnirelay.domain.lifecycle import FINAL_OUTCOMES, STATE_OF, AttemptState, JobKind, Outcome, Phase
from omnirelay.domain.message import Attempt, MessageState, state_decoder, state_encoder
from omnirelay.domain.model import AdvancedRequest, Step
from omnirelay.domain.request import PlannedStep, RequestOptions, StoredRequest, request_decoder
from omnirelay.domain.validation import Accepted, Limits, capability_key, prepare_send

SRC = Path(__file__).resolve().parents[2] / "src" / "omnirelay"

#: What ``jobs.kind`` holds for each event type in databases written so far.
STORED_KINDS = {
    failover.Start: "start",
    failover.SubmitStep: "submitstep",
    failover.Submitted: "submitted",
    failover.Reported: "report",
    failover.Expire: "expire",
}


def test_every_event_type_names_its_own_job_kind() -> None:
    event_types = typing.get_args(failover.Event)
    assert set(failover.EVENT_TYPES) == set(event_types)
    for event_type in event_types:
        assert "job_kind" in vars(event_type), f"{event_type.__name__} has no job_kind of its own"
        assert isinstance(event_type.job_kind, JobKind)
        assert "job_kind" not in event_type.__struct_fields__  # a class constant, never encoded
    kinds = [event_type.job_kind for event_type in event_types]
    assert len(set(kinds)) == len(kinds), "two event types share a job kind"
    assert set(kinds) == set(JobKind)


def test_job_kinds_are_what_is_stored() -> None:
    assert {t: t.job_kind.value for t in failover.EVENT_TYPES} == STORED_KINDS


def test_an_encoded_event_is_not_changed_by_its_job_kind() -> None:
    assert msgspec.json.encode(failover.Expire(2)) == b'{"type":"expire","step":2}'
    event = msgspec.json.decode(b'{"type":"report","step":0,"outcome":"RETRY"}', type=failover.Event)
    assert event == failover.Reported(0, Outcome.RETRY) and event.outcome is Outcome.RETRY


@pytest.mark.parametrize("enum", [Outcome, AttemptState, Phase])
def test_values_are_the_names(enum: type[Outcome | AttemptState | Phase]) -> None:
    assert [m.value for m in enum] == [m.name for m in enum]


def test_each_final_outcome_has_its_attempt_state() -> None:
    assert Outcome.RETRY not in FINAL_OUTCOMES
    assert {o.value for o in STATE_OF} == {s.value for s in STATE_OF.values()} == {o.value for o in FINAL_OUTCOMES}


def test_a_stored_state_encodes_and_decodes_as_strings() -> None:
    state = MessageState(
        phase=Phase.DONE, step=0, attempts=[Attempt(step=0, channel="SMS", state=AttemptState.SEEN, started_at=1.0)]
    )
    encoded = state_encoder.encode(state)
    assert encoded == (
        b'{"phase":"DONE","step":0,"attempts":[{"step":0,"channel":"SMS","state":"SEEN","started_at":1.0}]}'
    )
    decoded = state_decoder.decode(encoded)
    assert decoded.phase is Phase.DONE and decoded.attempts[0].state is AttemptState.SEEN
    assert state_encoder.encode(MessageState()) == b"{}"  # WAITING is the default: left out, as before


def test_the_stored_request_is_what_acceptance_writes() -> None:
    body = {
        "destinations": [{"to": {"phoneNumber": "+41793026727"}}],
        "whatsApp": {"text": "hi"},
        "sms": {"text": "hi"},
        "notifyUrl": "https://example.com/hook",
        "intermediateReport": True,
        "callbackData": "cb",
    }
    flow = [Step(channel="WHATSAPP", from_="447860099299"), Step(channel="SMS")]
    plan = prepare_send(msgspec.convert(body, AdvancedRequest), flow, 1_700_000_000.0, Limits())
    assert isinstance(plan, Accepted)
    stored = request_decoder.decode(plan.payload)
    assert stored == StoredRequest(
        steps=[PlannedStep("WHATSAPP", "447860099299", 48 * 3600.0), PlannedStep("SMS", None, 48 * 3600.0)],
        content=plan.content,
        options=RequestOptions(intermediateReport=True, notifyUrl="https://example.com/hook", callbackData="cb"),
    )
    assert msgspec.json.encode(stored) == plan.payload  # the struct is the payload's whole shape, nothing lost
    assert plan.destinations[0].address == capability_key(plan.destinations[0].to) == "41793026727"


def test_an_empty_stored_request_decodes() -> None:
    assert request_decoder.decode(b"{}") == StoredRequest()


def test_no_two_classes_of_the_package_share_a_name() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(str(path.relative_to(SRC)))
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert shared == {}
