"""Prometheus metrics of one gateway process, served at ``/metrics``.

Each :class:`Metrics` has a registry of its own, so several gateways in one test process do not collide.
The counters are thread-safe: the engine counts inside the SQLite writer thread.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The counters, gauges and histograms of a gateway process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.requests = Histogram(
            "omnirelay_http_request_seconds",
            "HTTP requests by route and status, with their latency",
            ["method", "route", "status"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.accepted = Counter("omnirelay_accepted_messages", "Messages accepted (stored) by the API", registry=r)
        self.submits = Counter("omnirelay_submits", "Steps handed to a channel", ["channel", "connector"], registry=r)
        self.outcomes = Counter("omnirelay_outcomes", "Outcomes reported for steps", ["channel", "outcome"], registry=r)
        self.failovers = Counter(
            "omnirelay_failovers", "Messages that moved on from a step", ["channel", "step"], registry=r
        )
        self.finals = Counter("omnirelay_final_reports", "Messages finished", ["channel", "status"], registry=r)
        self.webhooks = Counter("omnirelay_webhook_deliveries", "Webhook POSTs by result", ["result"], registry=r)
        self.queue_depth = Gauge("omnirelay_queue_depth", "Engine jobs due now and not yet taken", registry=r)
        self.job_lag = Gauge("omnirelay_job_lag_seconds", "How long the oldest due job has been waiting", registry=r)

    def of(self, metric: Any, *labels: str) -> Any:
        """The labelled child of a metric, looked up once (``labels()`` costs microseconds on the hot path)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
