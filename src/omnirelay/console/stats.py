"""The numbers behind the console's overview page, from the store's rollups (:mod:`omnirelay.domain.rollups`).

Pure functions: which range a request asks for (:func:`choose_range`), what the rollup rows of that range say
(:func:`summarize`), and how the connectors' stored snapshots read (:func:`connectors`). Reading rollups instead of
messages keeps the answer time independent of how many messages are stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msgspec

from omnirelay.domain import catalogue, rollups
from omnirelay.domain.message import MessageState
from omnirelay.domain.request import StoredRequest
from omnirelay.message_detail import OUTCOMES
from omnirelay.store.base import Overview

#: The ranges offered, by key: how far back from now.
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
RANGE_LABELS = {"1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days", "custom": "custom range"}
#: Ranges up to this long are read by the minute, longer ones by the hour.
MINUTE_RANGE_MAX_S = 6 * 3600
#: The longest custom range (hour rollups are kept about this long).
CUSTOM_MAX_S = 400 * 86400
TOP_ERRORS = 10
STALE_S = 15.0
"""A connector snapshot older than this is shown as stale (its process stopped, or cannot write)."""
MESSAGES_PATH = "/console/messages"

_health_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True)
class Range:
    """The acceptance times an overview counts: ``[since, until)``, whole buckets of ``span`` seconds."""

    key: str
    since: int
    until: int
    span: int

    @property
    def label(self) -> str:
        """How the page names it."""
        return RANGE_LABELS[self.key]


def _aligned(key: str, since: float, until: float) -> Range:
    span = rollups.MINUTE if until - since <= MINUTE_RANGE_MAX_S else rollups.HOUR
    start = int(since) - int(since) % span
    end = -(-int(until) // span) * span  # the bucket holding ``until`` counts whole
    return Range(key, start, max(end, start + span), span)


def parse_when(raw: str) -> float:
    """A ``datetime-local`` value (or ISO date-time) read as UTC; ValueError when malformed."""
    value = dt.datetime.fromisoformat(raw)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def choose_range(query: Mapping[str, str], now: float) -> Range | dict[str, list[str]]:
    """The range asked for: ``range=1h|24h|7d`` (default ``1h``), or ``range=custom`` with ``from`` and ``to``
    (UTC date-times); the errors by parameter name when it cannot be read."""
    key = query.get("range") or ("custom" if query.get("from") or query.get("to") else "1h")
    if key in RANGES:
        return _aligned(key, now - RANGES[key], now)
    if key != "custom":
        return {"range": [f"must be one of {', '.join([*RANGES, 'custom'])}"]}
    errors: dict[str, list[str]] = {}
    bounds: dict[str, float] = {}
    for name in ("from", "to"):
        raw = query.get(name, "")
        if not raw:
            if name == "to":
                bounds[name] = now
                continue
            errors[name] = ["is needed for a custom range"]
            continue
        try:
            bounds[name] = parse_when(raw)
        except ValueError:
            errors[name] = ["is not a date and time (YYYY-MM-DDTHH:MM, UTC)"]
    if errors:
        return errors
    if bounds["to"] <= bounds["from"]:
        return {"to": ["must be later than from"]}
    if bounds["to"] - bounds["from"] > CUSTOM_MAX_S:
        return {"from": [f"the range may span at most {CUSTOM_MAX_S // 86400} days"]}
    return _aligned("custom", bounds["from"], bounds["to"])


def _local(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M")


def search_link(rng: Range, **filters: str) -> str:
    """The console's message search over the range's acceptance times, with ``filters``."""
    return f"{MESSAGES_PATH}?{urlencode({**filters, 'since': _local(rng.since), 'until': _local(rng.until)})}"


def _latency(buckets: dict[int, int]) -> dict[str, Any]:
    return {
        "count": sum(buckets.values()),
        "median": rollups.quantile(buckets, 0.5),
        "p95": rollups.quantile(buckets, 0.95),
    }


def summarize(found: Overview, rng: Range, now: float, currency: str = "") -> dict[str, Any]:
    """The overview of one range, JSON-ready:

    - ``range``: what was counted (``from`` and ``to`` in epoch seconds, ``span``: the bucket width);
    - ``funnel``: accepted, each final outcome and PENDING (accepted, not finished yet); ``deliveredRate``;
    - ``failover``: per step (1-based) and channel, steps tried and how many failed over to a later step;
    - ``latency``: accept→final median and 95th percentile (seconds) of all finished messages that tried a step
      and of the delivered ones; ``channelLatency``: submission→delivery per channel;
    - ``errors``: the most frequent final error names, each with a link to the messages that ended with it;
    - ``cost``: the price of the final reports, per channel the message ended on;
    - ``buckets`` and ``perMinute``: per bucket of acceptance, accepted and finished by outcome (the name is the
      bucket's when the range is read by the minute, kept for the charts).
    """
    funnel: dict[str, int] = {"accepted": 0, **dict.fromkeys(OUTCOMES, 0), "PENDING": 0}
    tried: dict[tuple[int, str], list[int]] = {}
    latency: dict[str, dict[int, int]] = {"all": {}, "DELIVERED": {}}
    step_latency: dict[str, dict[int, int]] = {}
    errors: dict[str, int] = {}
    cost: dict[str, list[float]] = {}
    for kind, channel, step, group, error, bucket, n, amount in found.totals:
        if kind == rollups.ACCEPTED:
            funnel["accepted"] += n
        elif kind == rollups.FINAL:
            name = catalogue.GROUP_NAMES.get(group, "PENDING")
            if name in OUTCOMES:
                funnel[name] += n
            if error and error != "NO_ERROR":
                errors[error] = errors.get(error, 0) + n
            cell = cost.setdefault(channel, [0, 0.0])
            cell[0] += n
            cell[1] += amount
        elif kind == rollups.LATENCY:
            latency["all"][bucket] = latency["all"].get(bucket, 0) + n
            if group == catalogue.DELIVERED_TO_HANDSET.groupId:
                latency["DELIVERED"][bucket] = latency["DELIVERED"].get(bucket, 0) + n
        elif kind in (rollups.TRIED, rollups.FAILED_OVER):
            counts = tried.setdefault((step, channel), [0, 0])
            counts[kind == rollups.FAILED_OVER] += n
        elif kind == rollups.STEP_LATENCY:
            per = step_latency.setdefault(channel, {})
            per[bucket] = per.get(bucket, 0) + n
    finished = sum(funnel[o] for o in OUTCOMES)
    funnel["PENDING"] = max(0, funnel["accepted"] - finished)
    buckets = list(range(rng.since, rng.until, rng.span))
    index = {at: i for i, at in enumerate(buckets)}
    series: dict[str, list[int]] = {name: [0] * len(buckets) for name in ("accepted", *OUTCOMES)}
    for at, kind, group, n in found.series:
        i = index.get(int(at))
        if i is None:
            continue
        name = "accepted" if kind == rollups.ACCEPTED else catalogue.GROUP_NAMES.get(group, "PENDING")
        if name in series:
            series[name][i] += n
    top = sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ERRORS]
    return {
        "range": {"key": rng.key, "label": rng.label, "from": rng.since, "to": rng.until, "span": rng.span},
        "generatedAt": now,
        "total": funnel["accepted"],
        "finished": finished,
        "funnel": funnel,
        "deliveredRate": funnel["DELIVERED"] / finished if finished else None,
        "failover": [
            {"step": s, "channel": c, "tried": t, "failedOver": f, "rate": f / t if t else 0.0}
            for (s, c), (t, f) in sorted(tried.items())
        ],
        "latency": {name: _latency(b) for name, b in latency.items()},
        "channelLatency": [{"channel": c, **_latency(b)} for c, b in sorted(step_latency.items())],
        "errors": [
            {"error": e, "count": n, "share": n / finished if finished else 0.0, "link": search_link(rng, error=e)}
            for e, n in top
        ],
        "cost": {
            "currency": currency,
            "total": round(sum(c[1] for c in cost.values()), 6),
            "channels": [
                {"channel": ch, "messages": int(c[0]), "cost": round(c[1], 6)}
                for ch, c in sorted(cost.items(), key=lambda kv: (-kv[1][1], kv[0]))
            ],
        },
        "buckets": buckets,
        "perMinute": series,
    }


def connectors(rows: list[tuple[str, str, str, float, bytes]], now: float) -> list[dict[str, Any]]:
    """The stored connector snapshots as the page shows them, each with its age and whether it is stale."""
    out = []
    for process, name, channel, at, data in rows:
        age = max(0.0, now - at)
        out.append(
            {**_health_decoder.decode(data), "name": name, "channel": channel, "process": process,
             "ageSeconds": round(age, 1), "stale": age > STALE_S}
        )
    return out


def message_channel(state: MessageState, payload: StoredRequest) -> str:
    """The channel a message is on (or ended on): its state's, else its current or first step's, else "-"."""
    if state.channel:
        return state.channel
    steps = payload.steps
    index = state.step if 0 <= state.step < len(steps) else 0
    if steps:
        return steps[index].channel or "-"
    return "-"
