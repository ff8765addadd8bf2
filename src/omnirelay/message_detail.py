"""A message with its steps, attempts and history: what ``GET /omni/1/messages/{id}`` and the console's message
page (and its JSON) show, read once here for both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from omnirelay.domain import catalogue
from omnirelay.domain.lifecycle import Phase
from omnirelay.domain.message import MessageState, state_decoder
from omnirelay.domain.request import request_decoder
from omnirelay.store.base import MessageView

_DELIVERED = catalogue.DELIVERED_TO_HANDSET.groupName
#: The final status groups, in display order: DELIVERED first, then the others as the catalogue numbers them.
OUTCOMES = (
    _DELIVERED,
    *(name for name, i in catalogue.STATUS_GROUPS.items() if name != _DELIVERED and i != catalogue.PENDING_GROUP),
)


def outcome(state: MessageState) -> str:
    """A message's status group: PENDING until it is done, then DELIVERED, UNDELIVERABLE, EXPIRED or REJECTED."""
    if state.phase != Phase.DONE:
        return "PENDING"
    group = state.status.split("_", 1)[0]
    return group if group in OUTCOMES else "PENDING"


def _seconds(ts: float) -> float:
    return ts


def message_detail(view: MessageView, stamp: Callable[[float], Any] = _seconds) -> dict[str, Any]:
    """The message of ``view`` with its flow's steps, its attempts and its history, keyed as the API names them,
    in this order: ``messageId``, ``bulkId``, ``to``, ``createdAt``, ``phase``, ``outcome``, ``status`` (the
    state's), ``error`` (once done), ``channel``, ``sentAt``, ``doneAt``, ``steps``, ``attempts``, ``history``.

    Every time is passed through ``stamp`` (UNIX seconds as they are by default); a fact the message does not
    have (yet) is None, in the attempts too: a caller that shows no empty fields drops them."""
    state = state_decoder.decode(view.state)
    payload = request_decoder.decode(view.payload)

    def maybe(ts: float | None) -> Any:
        return stamp(ts) if ts is not None else None

    return {
        "messageId": view.message_id,
        "bulkId": view.bulk_id,
        "to": msgspec.json.decode(view.to_json),
        "createdAt": stamp(view.created_at),
        "phase": state.phase,
        "outcome": outcome(state),
        "status": state.status,
        "error": state.error if state.phase == Phase.DONE else None,
        "channel": state.channel,
        "sentAt": maybe(state.sent_at),
        "doneAt": maybe(state.done_at),
        "steps": [
            {"channel": s.channel, "from": s.sender, "validitySeconds": s.validity_s} for s in payload.steps
        ],
        "attempts": [
            {
                "step": a.step + 1,
                "channel": a.channel,
                "state": a.state,
                "startedAt": maybe(a.started_at),
                "doneAt": maybe(a.done_at),
                "status": a.status,
                "error": a.error,
                "providerId": a.provider_id,
                "note": a.note,
            }
            for a in state.attempts
        ],
        "history": [{"at": stamp(line.at), "text": line.text} for line in state.history],
    }
