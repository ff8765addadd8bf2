"""Filling the logs' filter columns of messages stored before those columns existed (schema version 4).

The network of a number comes from the configured prefixes, which the SQL migration cannot know: it marks those
messages, and each engine process fills them in at start, in batches, beside its other work.
"""

from __future__ import annotations

import logging

import msgspec

from omnirelay.domain.message import state_decoder
from omnirelay.domain.model import To
from omnirelay.domain.reports import Tariffs, log_columns
from omnirelay.domain.request import PlannedStep, request_decoder
from omnirelay.store.base import Store

log = logging.getLogger("omnirelay.engine")

_to_decoder = msgspec.json.Decoder(To)


async def fill_log_columns(store: Store, tariffs: Tariffs, batch: int = 1000) -> int:
    """Fill the filter columns of every marked message, as its log entry shows it; returns how many were filled.

    Each batch is one read and one write: a message the engine changes meanwhile gets its columns from that
    change and is left alone here.
    """
    filled = 0
    try:
        while rows := await store.unindexed_messages(batch):
            values: list[tuple[int, str | None, str | None, str | None]] = []
            steps_of: dict[bytes, list[PlannedStep]] = {}  # a request's messages come together
            for message, to_json, state_json, payload in rows:
                state = state_decoder.decode(state_json)
                steps = steps_of.get(payload)
                if steps is None:
                    steps = steps_of[payload] = request_decoder.decode(payload).steps
                step = steps[state.step] if 0 <= state.step < len(steps) else steps[0] if steps else None
                columns = log_columns(
                    state.channel or (step.channel if step else None),
                    step.sender if step else None,
                    _to_decoder.decode(to_json),
                    tariffs,
                )
                values.append((message, *columns))
            await store.set_log_columns(values)
            filled += len(values)
    except Exception:  # the columns stay marked, and the next start tries again
        log.exception("filling the logs' filter columns of older messages stopped after %d", filled)
        return filled
    if filled:
        log.info("filled the logs' filter columns of %d messages stored before schema version 4", filled)
    return filled
