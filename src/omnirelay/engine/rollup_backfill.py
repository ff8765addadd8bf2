"""Adding the messages stored before the console's rollups existed (schema version 9) to them.

Migration 009 lists every message of the time in ``rollup_backlog`` (with whether it was final then); each engine
process works the list down at start, in batches, beside its other work. Each batch is one transaction that adds
the messages and drops them from the list, so none is counted twice, whatever stops the process. A message that
was pending at the migration is counted as accepted here and as finished by the engine, when it ends.
"""

from __future__ import annotations

import logging

import msgspec

from omnirelay.domain import rollups
from omnirelay.domain.channels import parse_channel
from omnirelay.domain.lifecycle import NOT_TRIED
from omnirelay.domain.message import MessageState, state_decoder
from omnirelay.domain.model import To
from omnirelay.domain.reports import Tariffs, price_of
from omnirelay.domain.request import request_decoder
from omnirelay.domain.validation import address_for, main_address
from omnirelay.store.base import Backlogged, Store

log = logging.getLogger("omnirelay.engine")

_to_decoder = msgspec.json.Decoder(To)


def final_cost(state: MessageState, to_json: bytes, payload: bytes, tariffs: Tariffs) -> float:
    """The price of a finished message's final report (0 when it has none: refused when accepted)."""
    attempt = next((a for a in reversed(state.attempts) if a.state not in NOT_TRIED), None)
    if attempt is None:
        return 0.0
    to = _to_decoder.decode(to_json)
    content = request_decoder.decode(payload).content
    try:
        address = address_for(parse_channel(attempt.channel), to) or main_address(to) or ""
    except ValueError:
        address = main_address(to) or ""
    return price_of(address, attempt.channel, content, tariffs)


def tally(messages: list[Backlogged], tariffs: Tariffs) -> list[rollups.Row]:
    """What backlogged messages add to the rollups."""
    rows: list[rollups.Row] = []
    for m in messages:
        rows.append(rollups.accepted(m.account_id, m.created_at))
        if m.done:
            state = state_decoder.decode(m.state)
            cost = final_cost(state, m.to_json, m.payload, tariffs)
            rows += rollups.finished(m.account_id, m.created_at, state, m.status_group, cost)
    return rows


async def backfill(store: Store, tariffs: Tariffs, batch: int = 500) -> int:
    """Work the backlog down; returns how many messages this process added. (A batch is decoded inside its
    transaction: on SQLite that holds up the group commit, ~10 ms for 500 messages.)"""
    added = 0
    try:
        while taken := await store.backfill_rollups(batch, lambda found: tally(found, tariffs)):
            added += taken
    except Exception:  # the rest stays listed, and the next start goes on
        log.exception("adding older messages to the overview's rollups stopped after %d", added)
        return added
    if added:
        log.info("added %d messages stored before schema version 9 to the overview's rollups", added)
    return added
