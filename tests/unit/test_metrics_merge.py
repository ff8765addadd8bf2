"""Merging the API process's and the engine process's ``/metrics`` into one valid exposition."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from omnirelay.metrics import Metrics
from omnirelay.metrics_merge import merge


def _families(text: bytes) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(text.decode())}


def test_families_both_have_are_written_once_counters_added_gauges_the_engines() -> None:
    api, engine = Metrics(), Metrics()
    api.accepted.inc(7)
    api.of(api.requests, "POST", "/omni/1/advanced", "200").observe(0.004)
    api.of(api.requests, "POST", "/omni/1/advanced", "200").observe(0.2)
    api.queue_depth.set(3)  # both read the queue; the engine's reading wins
    engine.queue_depth.set(5)
    engine.of(engine.submits, "SMS", "main").inc(4)
    engine.of(engine.finals, "SMS", "DELIVERED_TO_HANDSET").inc(2)
    api.of(api.webhooks, "delivered").inc(1)  # a family with samples on both sides adds up
    engine.of(engine.webhooks, "delivered").inc(2)

    text = merge(api.render(), engine.render())

    types = [line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), Counter(types).most_common(3)
    helps = [line.split()[2] for line in text.decode().splitlines() if line.startswith("# HELP ")]
    assert sorted(helps) == sorted(types)
    got = _families(text)
    assert got["omnirelay_accepted_messages"] == [("omnirelay_accepted_messages_total", {}, 7.0)]
    assert got["omnirelay_queue_depth"] == [("omnirelay_queue_depth", {}, 5.0)]
    assert got["omnirelay_submits"] == [
        ("omnirelay_submits_total", {"channel": "SMS", "connector": "main"}, 4.0)
    ]
    assert ("omnirelay_webhook_deliveries_total", {"result": "delivered"}, 3.0) in got["omnirelay_webhook_deliveries"]
    buckets = {s[1]["le"]: s[2] for s in got["omnirelay_http_request_seconds"] if s[0].endswith("_bucket")}
    assert buckets["0.005"] == 1.0 and buckets["0.25"] == 2.0 and buckets["+Inf"] == 2.0


def test_created_times_are_the_earlier_one() -> None:
    api, engine = Metrics(), Metrics()
    text = merge(api.render(), engine.render())
    created = _families(text)["omnirelay_accepted_messages_created"][0][2]
    assert created == _families(api.render())["omnirelay_accepted_messages_created"][0][2]  # made first
    assert created < _families(engine.render())["omnirelay_accepted_messages_created"][0][2]


def test_a_family_only_one_side_has_is_kept() -> None:
    engine = Metrics()
    engine.of(engine.failovers, "WHATSAPP", "1").inc()
    extra = b"# HELP omnirelay_smpp_bound Sessions bound\n# TYPE omnirelay_smpp_bound gauge\nomnirelay_smpp_bound 2.0\n"
    got = _families(merge(Metrics().render(), engine.render() + extra))
    assert got["omnirelay_smpp_bound"] == [("omnirelay_smpp_bound", {}, 2.0)]
    assert got["omnirelay_failovers"] == [("omnirelay_failovers_total", {"channel": "WHATSAPP", "step": "1"}, 1.0)]
