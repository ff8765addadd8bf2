"""The console overview's aggregation: a pure function of message views."""

from __future__ import annotations

import msgspec

from omnirelay.console.stats import aggregate, message_channel, outcome
from omnirelay.domain.message import Attempt, LogLine, MessageState, state_encoder
from omnirelay.store.base import MessageView

NOW = 1_700_000_000.0  # a multiple of 60 plus 20 s: 1_699_999_980 is a minute start
START = 1_700_000_040 - 3600  # the first bucket: the hour that ends with the bucket holding NOW
WA_SMS = {"steps": [{"channel": "WHATSAPP", "sender": "W"}, {"channel": "SMS", "sender": "S"}], "content": {}}


def view(created_at: float, state: MessageState, payload: dict[str, object] | None = None, n: int = 0) -> MessageView:
    return MessageView(
        message_id=f"m{n}",
        bulk_id=None,
        to_json=b'{"phoneNumber":"41793026727"}',
        created_at=created_at,
        state=state_encoder.encode(state),
        payload=msgspec.json.encode(payload if payload is not None else WA_SMS),
    )


def failed_over_to_sms(at: float) -> MessageState:
    return MessageState(
        phase="DONE",
        step=1,
        attempts=[
            Attempt(0, "WHATSAPP", "REJECTED", at, at, "REJECTED_DESTINATION", "EC_UNKNOWN_USER"),
            Attempt(1, "SMS", "DELIVERED", at, at, "DELIVERED_TO_HANDSET", "NO_ERROR"),
        ],
        history=[LogLine(at, "accepted")],
        status="DELIVERED_TO_HANDSET",
        channel="SMS",
        done_at=at,
    )


def delivered_on_whatsapp(at: float) -> MessageState:
    return MessageState(
        phase="DONE",
        step=0,
        attempts=[Attempt(0, "WHATSAPP", "DELIVERED", at, at, "DELIVERED_TO_HANDSET")],
        status="DELIVERED_TO_HANDSET",
        channel="WHATSAPP",
        done_at=at,
    )


def undeliverable_everywhere(at: float) -> MessageState:
    return MessageState(
        phase="DONE",
        step=1,
        attempts=[
            Attempt(0, "WHATSAPP", "UNDELIVERABLE", at, at, "UNDELIVERABLE_NOT_DELIVERED"),
            Attempt(1, "SMS", "UNDELIVERABLE", at, at, "UNDELIVERABLE_NOT_DELIVERED"),
        ],
        status="UNDELIVERABLE_NOT_DELIVERED",
        error="EC_ABSENT_SUBSCRIBER_SM",
        channel="SMS",
        done_at=at,
    )


def test_empty() -> None:
    out = aggregate([], NOW)
    assert len(out["buckets"]) == 60
    assert out["buckets"][0] == START and out["buckets"][-1] <= NOW < out["buckets"][-1] + 60
    assert out["perMinute"] == {} and out["failover"] == [] and out["total"] == 0
    assert out["funnel"] == {
        "accepted": 0, "firstStep": 0, "failedOver": 0,
        "DELIVERED": 0, "UNDELIVERABLE": 0, "EXPIRED": 0, "REJECTED": 0, "PENDING": 0,
    }


def test_per_minute_by_channel_and_outcome() -> None:
    views = [
        view(NOW - 5, failed_over_to_sms(NOW - 5), n=1),
        view(NOW - 10, failed_over_to_sms(NOW - 10), n=2),
        view(NOW - 125, delivered_on_whatsapp(NOW - 125), n=3),
        view(NOW - 3599, undeliverable_everywhere(NOW - 3599), n=4),
        view(NOW - 3601, delivered_on_whatsapp(NOW - 3601), n=5),  # older than the hour: left out
        view(NOW + 5, delivered_on_whatsapp(NOW + 5), n=6),  # in the future (clock skew): left out
    ]
    out = aggregate(views, NOW)
    assert out["total"] == 4
    assert set(out["perMinute"]) == {"SMS DELIVERED", "WHATSAPP DELIVERED", "SMS UNDELIVERABLE"}
    sms = out["perMinute"]["SMS DELIVERED"]
    assert sum(sms) == 2 and sms[-1] == 2  # both in the bucket holding NOW
    wa = out["perMinute"]["WHATSAPP DELIVERED"]
    assert wa[out["buckets"].index((int(NOW - 125) // 60) * 60)] == 1 and sum(wa) == 1
    assert out["perMinute"]["SMS UNDELIVERABLE"][0] == 1  # NOW - 3599 falls in the first bucket
    assert all(len(series) == 60 for series in out["perMinute"].values())


def test_failover_rate_per_step_and_funnel() -> None:
    views = [
        view(NOW - 1, failed_over_to_sms(NOW - 1), n=1),
        view(NOW - 2, failed_over_to_sms(NOW - 2), n=2),
        view(NOW - 3, delivered_on_whatsapp(NOW - 3), n=3),
        view(NOW - 4, undeliverable_everywhere(NOW - 4), n=4),
        view(NOW - 5, MessageState(history=[LogLine(NOW - 5, "accepted")]), n=5),  # waiting
    ]
    out = aggregate(views, NOW)
    assert out["failover"] == [
        {"step": 1, "channel": "WHATSAPP", "tried": 4, "failedOver": 3, "rate": 0.75},
        # the last step never fails over: there is no next one
        {"step": 2, "channel": "SMS", "tried": 3, "failedOver": 0, "rate": 0.0},
    ]
    assert out["funnel"] == {
        "accepted": 5, "firstStep": 4, "failedOver": 3,
        "DELIVERED": 3, "UNDELIVERABLE": 1, "EXPIRED": 0, "REJECTED": 0, "PENDING": 1,
    }
    # a waiting message counts on its first step's channel
    assert out["perMinute"]["WHATSAPP PENDING"][-1] == 1


def test_skipped_steps_are_not_tried() -> None:
    # capability memory skipped WhatsApp: not a try, not a failover
    state = MessageState(
        phase="DONE",
        step=1,
        attempts=[
            Attempt(0, "WHATSAPP", "SKIPPED", NOW - 1, NOW - 1, note="not a WhatsApp user"),
            Attempt(1, "SMS", "DELIVERED", NOW - 1, NOW - 1, "DELIVERED_TO_HANDSET"),
        ],
        status="DELIVERED_TO_HANDSET",
        channel="SMS",
    )
    out = aggregate([view(NOW - 1, state)], NOW)
    assert out["failover"] == [{"step": 2, "channel": "SMS", "tried": 1, "failedOver": 0, "rate": 0.0}]
    assert out["funnel"]["firstStep"] == 1 and out["funnel"]["failedOver"] == 0


def test_expired_and_rejected_outcomes() -> None:
    expired = MessageState(phase="DONE", status="EXPIRED_EXPIRED", channel="SMS", step=1)
    rejected = MessageState(phase="DONE", status="REJECTED_DESTINATION", channel="SMS", step=1)
    assert outcome(expired) == "EXPIRED" and outcome(rejected) == "REJECTED"
    assert outcome(MessageState(phase="ACTIVE", status="DELIVERED_TO_HANDSET")) == "PENDING"
    out = aggregate([view(NOW - 1, expired, n=1), view(NOW - 2, rejected, n=2)], NOW)
    assert out["funnel"]["EXPIRED"] == 1 and out["funnel"]["REJECTED"] == 1


def test_message_channel() -> None:
    assert message_channel(MessageState(channel="VIBER"), WA_SMS) == "VIBER"
    assert message_channel(MessageState(step=1), WA_SMS) == "SMS"
    assert message_channel(MessageState(), WA_SMS) == "WHATSAPP"
    assert message_channel(MessageState(), {}) == "-"


def test_custom_buckets() -> None:
    out = aggregate([view(NOW - 1, delivered_on_whatsapp(NOW - 1))], NOW, window_s=600, bucket_s=300)
    assert len(out["buckets"]) == 2 and out["perMinute"]["WHATSAPP DELIVERED"] == [0, 1]
