"""Scenarios: an account's saved failover flows, at most one of them its default."""

from __future__ import annotations

import msgspec

from omnirelay.store.base import ScenarioRecord
from omnirelay.store.flow import All, Dialect, Exec, Flow, One
from omnirelay.store.rows import scenario_from_row


def create_scenario(d: Dialect, account_id: int, scenario: ScenarioRecord, now: float) -> Flow[None]:
    """Store a new scenario (a new default takes the place of the old one) and tell other processes."""
    if scenario.default:
        yield Exec(d.q.drop_default_scenario, account_id)
    flow = msgspec.json.encode(scenario.flow)
    yield Exec(d.q.create_scenario, scenario.key, account_id, scenario.name, flow, scenario.default, now)
    yield Exec(d.q.notify_scenarios)


def update_scenario(d: Dialect, account_id: int, scenario: ScenarioRecord) -> Flow[bool]:
    """Replace a scenario of the account; False when it has none with that key."""
    if scenario.default:
        yield Exec(d.q.drop_default_but, account_id, scenario.key)
    flow = msgspec.json.encode(scenario.flow)
    changed = yield Exec(d.q.update_scenario, account_id, scenario.key, scenario.name, flow, scenario.default)
    yield Exec(d.q.notify_scenarios)
    return bool(changed > 0)


def delete_scenario(d: Dialect, account_id: int, key: str) -> Flow[bool]:
    """Remove a scenario of the account; False when it has none with that key."""
    removed = yield Exec(d.q.delete_scenario, account_id, key)
    yield Exec(d.q.notify_scenarios)
    return bool(removed > 0)


def scenario(d: Dialect, account_id: int, key: str) -> Flow[ScenarioRecord | None]:
    """The account's scenario with that key, or None."""
    row = yield One(d.q.scenario, account_id, key)
    return scenario_from_row(row) if row else None


def default_scenario(d: Dialect, account_id: int) -> Flow[ScenarioRecord | None]:
    """The account's default scenario, or None."""
    row = yield One(d.q.default_scenario, account_id)
    return scenario_from_row(row) if row else None


def scenarios(
    d: Dialect, account_id: int, is_default: bool | None, limit: int, page: int
) -> Flow[list[ScenarioRecord]]:
    """A page of the account's scenarios, oldest first; ``is_default`` None: default or not."""
    rows = yield All(d.q.scenarios, account_id, is_default, limit, page * limit)
    return [scenario_from_row(r) for r in rows]
