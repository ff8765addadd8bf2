"""The numbers behind the console's overview page: pure functions of the messages of the last hour."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from omnirelay.domain.message import MessageState, state_decoder
from omnirelay.store.base import MessageView

#: Attempt states that end a step without success: the message moves on to the next step, if any.
FAILED_STATES = frozenset({"UNDELIVERABLE", "REJECTED", "EXPIRED"})
#: Attempt states that do not count as trying a step.
NOT_TRIED_STATES = frozenset({"SKIPPED", "CANCELLED"})
#: The final outcomes of the funnel, in display order.
OUTCOMES = ("DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED")

_payload_decoder = msgspec.json.Decoder(dict[str, Any])


def outcome(state: MessageState) -> str:
    """A message's status group: PENDING until it is done, then DELIVERED, UNDELIVERABLE, EXPIRED or REJECTED."""
    if state.phase != "DONE":
        return "PENDING"
    group = state.status.split("_", 1)[0]
    return group if group in OUTCOMES else "PENDING"


def message_channel(state: MessageState, payload: dict[str, Any]) -> str:
    """The channel a message is on (or ended on): its state's, else its current or first step's, else "-"."""
    if state.channel:
        return state.channel
    steps = payload.get("steps") or []
    index = state.step if 0 <= state.step < len(steps) else 0
    if steps:
        return str(steps[index].get("channel") or "-")
    return "-"


def _failed_over(state: MessageState) -> list[bool]:
    """For each attempt: whether it failed and a later attempt of the message was made."""
    attempts = state.attempts
    return [
        a.state in FAILED_STATES and any(b.step > a.step for b in attempts[i + 1 :]) for i, a in enumerate(attempts)
    ]


def aggregate(views: Iterable[MessageView], now: float, window_s: int = 3600, bucket_s: int = 60) -> dict[str, Any]:
    """Aggregate messages for the overview charts.

    ``views``: messages (as the store's ``logs`` returns them); those created outside ``[now - window_s, now]``
    are ignored. Returns a JSON-ready dict:

    - ``buckets``: the start (epoch seconds) of each ``bucket_s`` bucket, oldest first;
    - ``perMinute``: ``{"<channel> <outcome>": [count per bucket]}``, by creation time;
    - ``failover``: per step (1-based) and channel, how many attempts were tried and how many failed over;
    - ``funnel``: accepted → firstStep → failedOver → each final outcome (and still pending);
    - ``total``: how many messages were counted.
    """
    count = max(1, window_s // bucket_s)
    end = (int(now) // bucket_s + 1) * bucket_s  # end of the bucket holding ``now``
    start = end - count * bucket_s
    buckets = [start + i * bucket_s for i in range(count)]
    per_minute: dict[str, list[int]] = {}
    failover: dict[tuple[int, str], list[int]] = {}
    funnel = {"accepted": 0, "firstStep": 0, "failedOver": 0, **dict.fromkeys(OUTCOMES, 0), "PENDING": 0}
    for view in views:
        if not (now - window_s <= view.created_at <= now):
            continue
        state = state_decoder.decode(view.state)
        payload = _payload_decoder.decode(view.payload)
        group = outcome(state)
        series = per_minute.setdefault(f"{message_channel(state, payload)} {group}", [0] * count)
        index = min(count - 1, max(0, int((view.created_at - start) // bucket_s)))
        series[index] += 1
        funnel["accepted"] += 1
        funnel[group] += 1
        tried = [a for a in state.attempts if a.state not in NOT_TRIED_STATES]
        if tried:
            funnel["firstStep"] += 1
        moved = _failed_over(state)
        if any(moved):
            funnel["failedOver"] += 1
        for attempt, went_on in zip(state.attempts, moved, strict=True):
            if attempt.state in NOT_TRIED_STATES:
                continue
            cell = failover.setdefault((attempt.step + 1, attempt.channel), [0, 0])
            cell[0] += 1
            cell[1] += went_on
    return {
        "buckets": buckets,
        "perMinute": dict(sorted(per_minute.items())),
        "failover": [
            {
                "step": step,
                "channel": channel,
                "tried": tried_n,
                "failedOver": moved_n,
                "rate": moved_n / tried_n if tried_n else 0.0,
            }
            for (step, channel), (tried_n, moved_n) in sorted(failover.items())
        ],
        "funnel": funnel,
        "total": funnel["accepted"],
    }
