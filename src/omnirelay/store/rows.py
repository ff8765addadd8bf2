"""Row mapping and checks shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from omnirelay.domain.model import Step
from omnirelay.store.base import Account, MessageIdConflict, NewMessage, ScenarioRecord, Stored

ACCOUNT_COLS = "id, username, password_hash, webhook_secret, source"
SCENARIO_COLS = "key, name, flow, is_default"
WORK_COLS = "m.id, m.account_id, m.message_id, m.bulk_id, m.to_json, m.created_at, m.state, m.request_id, r.payload"
#: Everything an account owns, deleted with it (``{p}`` is the account id's placeholder).
OWNED_BY_ACCOUNT = (
    "jobs WHERE message IN (SELECT id FROM messages WHERE account_id = {p})",
    "submissions WHERE message IN (SELECT id FROM messages WHERE account_id = {p})",
    "messages WHERE account_id = {p}",
    "requests WHERE account_id = {p}",
    "reports WHERE account_id = {p}",
    "outbox WHERE account_id = {p}",
    "capabilities WHERE account_id = {p}",
    "scenarios WHERE account_id = {p}",
    "api_keys WHERE account_id = {p}",
)

#: When the earliest job is due; one look-up per partial index of ``jobs``.
NEXT_DUE = (
    "SELECT MIN(d) FROM (SELECT MIN(due_at) AS d FROM jobs WHERE kind <> 'start'"
    " UNION ALL SELECT MIN(due_at) FROM jobs WHERE kind = 'start') AS m"
)
VIEW_COLS = "m.message_id, m.bulk_id, m.to_json, m.created_at, m.state, r.payload"

_flow_decoder = msgspec.json.Decoder(list[Step])


def account_from_row(row: Sequence[Any]) -> Account:
    """An :class:`Account` from a row of ``ACCOUNT_COLS``."""
    return Account(id=row[0], username=row[1], password_hash=row[2], webhook_secret=row[3], source=row[4])


def scenario_from_row(row: Sequence[Any]) -> ScenarioRecord:
    """A :class:`ScenarioRecord` from a row of ``SCENARIO_COLS``."""
    return ScenarioRecord(key=row[0], name=row[1], flow=_flow_decoder.decode(row[2]), default=bool(row[3]))


def replayed(
    messages: list[NewMessage], existing: Mapping[str, tuple[bytes, bytes, str | None]]
) -> list[Stored | None]:
    """For each message, the stored answer when its client-supplied id is already taken with the same content.

    ``existing`` maps a message id to (content hash, to_json, bulk id) of the stored message; a message id
    taken with other content raises :class:`MessageIdConflict` naming the destination.
    """
    answers: list[Stored | None] = [None] * len(messages)
    for i, m in enumerate(messages):
        found = existing.get(m.message_id) if m.supplied else None
        if found is None:
            continue
        content_hash, to_json, bulk_id = found
        if bytes(content_hash) != m.content_hash:
            raise MessageIdConflict(i)
        answers[i] = Stored(m.message_id, bytes(to_json), bulk_id)
    return answers
