"""The console overview's pure parts: what a message adds to the rollups (domain/rollups.py), which range a
request asks for, and what rollup rows summarize to (console/stats.py)."""

from __future__ import annotations

import math

from omnirelay.console.stats import Range, choose_range, connectors, message_channel, summarize
from omnirelay.domain import rollups
from omnirelay.domain.message import Attempt, MessageState
from omnirelay.domain.request import PlannedStep, StoredRequest
from omnirelay.message_detail import outcome
from omnirelay.store.base import Overview

MINUTE0 = 1_699_999_980  # a minute start
HOUR0 = 1_699_999_200  # the start of its hour
NOW = MINUTE0 + 20.0
WA_SMS = StoredRequest(steps=[PlannedStep("WHATSAPP", "W", 60.0), PlannedStep("SMS", "S", 60.0)])


def failed_over_to_sms(at: float) -> MessageState:
    return MessageState(
        phase="DONE",
        step=1,
        attempts=[
            Attempt(0, "WHATSAPP", "REJECTED", at + 1, at + 2, "REJECTED_DESTINATION", "EC_UNKNOWN_USER"),
            Attempt(1, "SMS", "DELIVERED", at + 2, at + 5, "DELIVERED_TO_HANDSET", "NO_ERROR"),
        ],
        status="DELIVERED_TO_HANDSET",
        channel="SMS",
        done_at=at + 5,
    )


def test_latency_buckets_are_monotonic_and_within_a_fifth() -> None:
    assert rollups.latency_bucket(0) == 0 and rollups.latency_bucket(-1) == 0
    assert rollups.latency_bucket(float("nan")) == 0
    last = 0
    for ms in (1, 1.1, 2, 3, 10, 99, 1000, 60_000, 3_600_000, 86_400_000 * 400):
        bucket = rollups.latency_bucket(ms / 1000)
        assert bucket >= last
        last = bucket
        middle = rollups.bucket_seconds(bucket) * 1000
        assert abs(math.log2(middle / ms)) <= 0.125 + 1e-9 or bucket == 160  # half a bucket (a quarter doubling)


def test_quantile_from_bucket_counts() -> None:
    assert rollups.quantile({}, 0.5) is None
    one_s, ten_s = rollups.latency_bucket(1.0), rollups.latency_bucket(10.0)
    counts = {one_s: 94, ten_s: 6}
    assert rollups.latency_bucket(rollups.quantile(counts, 0.5) or 0) == one_s
    assert rollups.latency_bucket(rollups.quantile(counts, 0.95) or 0) == ten_s
    assert rollups.latency_bucket(rollups.quantile(counts, 0.94) or 0) == one_s


def test_what_a_finished_message_adds() -> None:
    rows = rollups.finished(7, NOW, failed_over_to_sms(NOW), 3, 0.05)
    kinds = sorted((r[2], r[3], r[4], r[5], r[6]) for r in rows)
    assert kinds == sorted([
        ("final", "SMS", 0, 3, "NO_ERROR"),
        ("latency", "", 0, 3, ""),
        ("tried", "WHATSAPP", 1, 0, ""),
        ("failover", "WHATSAPP", 1, 0, ""),
        ("tried", "SMS", 2, 0, ""),
        ("steplatency", "SMS", 0, 0, ""),
    ])
    by_kind = {r[2]: r for r in rows}
    assert by_kind["final"][9] == 0.05 and all(r[0] == 7 and r[1] == NOW for r in rows)
    assert by_kind["latency"][7] == rollups.latency_bucket(5.0)
    assert by_kind["steplatency"][7] == rollups.latency_bucket(3.0)
    # skipped steps are not tried; a refused destination has an outcome only
    skipped = MessageState(phase="DONE", attempts=[Attempt(0, "WHATSAPP", "SKIPPED", NOW)], status="REJECTED_X",
                           error="EC_X", done_at=NOW)
    assert [r[2] for r in rollups.finished(7, NOW, skipped, 5, 0.0)] == ["final"]


def test_keyed_sums_per_minute_and_hour_in_key_order() -> None:
    rows = [rollups.accepted(1, NOW), rollups.accepted(1, NOW + 30), rollups.accepted(1, NOW + 50)]
    rows.append(rollups.accepted(2, NOW))
    keyed = rollups.keyed(rows, shard=3)
    assert [(k[0], k[1], k[2], k[3], n) for k, n, _ in keyed] == [
        (1, 60, MINUTE0, 3, 2),
        (1, 60, MINUTE0 + 60, 3, 1),
        (1, 3600, HOUR0, 3, 3),
        (2, 60, MINUTE0, 3, 1),
        (2, 3600, HOUR0, 3, 1),
    ]
    assert [k for k, _, _ in keyed] == sorted(k for k, _, _ in keyed)


def test_ranges() -> None:
    last_hour = choose_range({}, NOW)
    assert last_hour == Range("1h", MINUTE0 - 3600, MINUTE0 + 60, 60)
    day = choose_range({"range": "24h"}, NOW)
    assert day == Range("24h", HOUR0 - 86400, HOUR0 + 3600, 3600)
    week = choose_range({"range": "7d"}, NOW)
    assert isinstance(week, Range) and week.span == 3600 and week.until - week.since == 7 * 86400 + 3600
    custom = choose_range({"range": "custom", "from": "2023-11-14T20:00", "to": "2023-11-14T21:30"}, NOW)
    assert custom == Range("custom", 1_699_992_000, 1_699_997_400, 60)
    assert choose_range({"range": "2d"}, NOW) == {"range": ["must be one of 1h, 24h, 7d, custom"]}
    assert set(choose_range({"range": "custom"}, NOW)) == {"from"}  # type: ignore[arg-type]
    assert set(choose_range({"range": "custom", "from": "yesterday"}, NOW)) == {"from"}  # type: ignore[arg-type]
    assert choose_range({"from": "2023-11-14T21:00", "to": "2023-11-14T20:00"}, NOW) == {
        "to": ["must be later than from"]
    }


def test_summarize() -> None:
    rng = Range("custom", MINUTE0 - 120, MINUTE0, 60)
    first, second = rng.since, rng.since + 60
    one_s = rollups.latency_bucket(1.0)
    found = Overview(
        totals=[
            ("accepted", "", 0, 0, "", 0, 10, 0.0),
            ("final", "SMS", 0, 3, "NO_ERROR", 0, 6, 0.3),
            ("final", "WHATSAPP", 0, 3, "NO_ERROR", 0, 1, 0.01),
            ("final", "SMS", 0, 2, "EC_ABSENT_SUBSCRIBER_SM", 0, 2, 0.1),
            ("final", "-", 0, 5, "EC_INVALID_DESTINATION_ADDRESS", 0, 1, 0.0),
            ("latency", "", 0, 3, "", one_s, 7, 0.0),
            ("latency", "", 0, 2, "", one_s + 8, 2, 0.0),
            ("tried", "WHATSAPP", 1, 0, "", 0, 8, 0.0),
            ("failover", "WHATSAPP", 1, 0, "", 0, 6, 0.0),
            ("tried", "SMS", 2, 0, "", 0, 8, 0.0),
            ("steplatency", "SMS", 0, 0, "", one_s, 6, 0.0),
        ],
        series=[(first, "accepted", 0, 4), (second, "accepted", 0, 6), (first, "final", 3, 4), (second, "final", 2, 2),
                (second, "final", 3, 3), (second, "final", 5, 1)],
    )
    out = summarize(found, rng, NOW, "EUR")
    assert out["funnel"] == {"accepted": 10, "DELIVERED": 7, "UNDELIVERABLE": 2, "EXPIRED": 0, "REJECTED": 1,
                             "PENDING": 0}
    assert out["deliveredRate"] == 0.7
    assert out["failover"] == [
        {"step": 1, "channel": "WHATSAPP", "tried": 8, "failedOver": 6, "rate": 0.75},
        {"step": 2, "channel": "SMS", "tried": 8, "failedOver": 0, "rate": 0.0},
    ]
    assert out["latency"]["all"]["count"] == 9 and out["latency"]["DELIVERED"]["count"] == 7
    assert rollups.latency_bucket(out["latency"]["all"]["median"]) == one_s
    assert rollups.latency_bucket(out["latency"]["all"]["p95"]) == one_s + 8
    assert out["channelLatency"] == [{"channel": "SMS", "count": 6, **{k: out["channelLatency"][0][k]
                                                                        for k in ("median", "p95")}}]
    assert [(e["error"], e["count"]) for e in out["errors"]] == [
        ("EC_ABSENT_SUBSCRIBER_SM", 2),
        ("EC_INVALID_DESTINATION_ADDRESS", 1),
    ]
    assert out["errors"][0]["link"] == (
        "/console/messages?error=EC_ABSENT_SUBSCRIBER_SM&since=2023-11-14T22%3A11&until=2023-11-14T22%3A13"
    )
    assert out["cost"] == {"currency": "EUR", "total": 0.41, "channels": [
        {"channel": "SMS", "messages": 8, "cost": 0.4},
        {"channel": "WHATSAPP", "messages": 1, "cost": 0.01},
        {"channel": "-", "messages": 1, "cost": 0.0},
    ]}
    assert out["buckets"] == [first, second]
    assert out["perMinute"] == {"accepted": [4, 6], "DELIVERED": [4, 3], "UNDELIVERABLE": [0, 2], "EXPIRED": [0, 0],
                                "REJECTED": [0, 1]}


def test_summarize_counts_the_unfinished_as_pending() -> None:
    rng = Range("1h", 0, 3600, 60)
    out = summarize(Overview([("accepted", "", 0, 0, "", 0, 3, 0.0)], []), rng, NOW)
    assert out["funnel"]["PENDING"] == 3 and out["deliveredRate"] is None and out["latency"]["all"]["median"] is None


def test_connector_snapshots_age() -> None:
    rows = [("h:1", "main", "SMS", NOW - 2, b'{"bound":true,"kind":"SmppChannel"}'), ("h:2", "wa", "WHATSAPP",
            NOW - 60, b"{}")]
    out = connectors(rows, NOW)
    assert out[0] == {"bound": True, "kind": "SmppChannel", "name": "main", "channel": "SMS", "process": "h:1",
                      "ageSeconds": 2.0, "stale": False}
    assert out[1]["stale"] is True


def test_outcome_and_channel() -> None:
    assert outcome(MessageState(phase="DONE", status="EXPIRED_EXPIRED")) == "EXPIRED"
    assert outcome(MessageState(phase="ACTIVE", status="DELIVERED_TO_HANDSET")) == "PENDING"
    assert message_channel(MessageState(channel="VIBER"), WA_SMS) == "VIBER"
    assert message_channel(MessageState(step=1), WA_SMS) == "SMS"
    assert message_channel(MessageState(), StoredRequest()) == "-"
