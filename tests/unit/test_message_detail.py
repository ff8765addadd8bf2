"""A message with its steps, attempts and history, as the API and the console both read it (message_detail.py)."""

from __future__ import annotations

import msgspec

from omnirelay.domain.dates import format_ts
from omnirelay.domain.message import Attempt, LogLine, MessageState
from omnirelay.message_detail import message_detail
from omnirelay.store.base import MessageView

T0 = 1_700_000_000.0
PAYLOAD = (
    b'{"steps":[{"channel":"SMS","sender":"InfoSMS","validity_s":60.0},'
    b'{"channel":"EMAIL","sender":null,"validity_s":172800.0}],"content":{}}'
)


def _view(state: MessageState) -> MessageView:
    return MessageView("m1", None, b'{"phoneNumber":"41791234567"}', T0, msgspec.json.encode(state), PAYLOAD)


def test_a_failed_over_message_with_its_attempts_and_history_in_order() -> None:
    state = MessageState(
        phase="DONE",
        status="DELIVERED_TO_HANDSET",
        error="NO_ERROR",
        channel="EMAIL",
        step=1,
        sent_at=T0 + 1,
        done_at=T0 + 5,
        attempts=[
            Attempt(0, "SMS", "UNDELIVERABLE", T0 + 1, T0 + 2, error="EC_ABSENT_SUBSCRIBER", provider_id="main:7"),
            Attempt(1, "EMAIL", "DELIVERED", T0 + 3, T0 + 5),
        ],
        history=[LogLine(T0, "accepted"), LogLine(T0 + 2, "failed over")],
    )
    d = message_detail(_view(state))
    assert list(d) == [
        "messageId", "bulkId", "to", "createdAt", "phase", "outcome", "status", "error", "channel", "sentAt",
        "doneAt", "steps", "attempts", "history",
    ]  # fmt: skip
    assert (d["outcome"], d["status"], d["error"]) == ("DELIVERED", "DELIVERED_TO_HANDSET", "NO_ERROR")
    assert (d["createdAt"], d["sentAt"], d["doneAt"]) == (T0, T0 + 1, T0 + 5)
    assert d["to"] == {"phoneNumber": "41791234567"}
    assert d["steps"] == [
        {"channel": "SMS", "from": "InfoSMS", "validitySeconds": 60.0},
        {"channel": "EMAIL", "from": None, "validitySeconds": 172800.0},
    ]
    assert d["attempts"][0] == {
        "step": 1,
        "channel": "SMS",
        "state": "UNDELIVERABLE",
        "startedAt": T0 + 1,
        "doneAt": T0 + 2,
        "status": None,
        "error": "EC_ABSENT_SUBSCRIBER",
        "providerId": "main:7",
        "note": None,
    }
    assert [line["text"] for line in d["history"]] == ["accepted", "failed over"]


def test_times_pass_through_the_stamp_and_missing_ones_stay_none() -> None:
    state = MessageState(phase="ACTIVE", attempts=[Attempt(0, "SMS", "SUBMITTING", T0 + 1)], history=[LogLine(T0, "a")])
    d = message_detail(_view(state), format_ts)
    assert d["createdAt"] == format_ts(T0)
    assert d["attempts"][0]["startedAt"] == format_ts(T0 + 1)
    assert d["attempts"][0]["doneAt"] is None
    assert d["history"][0]["at"] == format_ts(T0)
    assert (d["sentAt"], d["doneAt"], d["error"], d["outcome"]) == (None, None, None, "PENDING")
