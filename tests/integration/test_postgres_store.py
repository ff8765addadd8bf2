"""What only the PostgreSQL store does: several processes share it, so each one's cached scenarios must follow the
changes the others make (two stores on one fresh database stand for two API processes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from omnirelay.domain.model import Step
from omnirelay.store.base import ScenarioRecord
from omnirelay.store.flows import sending
from omnirelay.store.postgres import PostgresStore, run_flow
from omnirelay.store.rows import AcceptItem
from tests.integration.test_store_contract import message
from tests.pg import create_database, drop_database

pytestmark = pytest.mark.timeout(60)

FLOW = [Step(from_="InfoSMS", channel="SMS")]


@pytest.fixture
async def two() -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    url = await create_database()
    first, second = await PostgresStore.open(url), await PostgresStore.open(url)
    yield first, second
    await first.close()
    await second.close()
    await drop_database(url)


async def _eventually(read: object, want: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        got = await read()  # type: ignore[operator]
        if got == want:
            return
        assert time.monotonic() < deadline, f"still {got!r}, wanted {want!r}"
        await asyncio.sleep(0.01)


async def test_a_scenario_changed_by_another_process_is_seen(two: tuple[PostgresStore, PostgresStore]) -> None:
    writer, reader = two
    account = (await writer.create_account("a", None, "secret", "cli")).id
    await writer.create_scenario(account, ScenarioRecord("K", "one", FLOW, True))
    assert (await reader.scenario(account, "K")).name == "one"  # type: ignore[union-attr]
    while not reader._scenarios_live:  # its listener is up: from now on it answers from its cache
        await asyncio.sleep(0.01)
    assert (await reader.scenario(account, "K")).name == "one"  # type: ignore[union-attr]
    assert (await reader.default_scenario(account)).key == "K"  # type: ignore[union-attr]

    async def name() -> str | None:
        found = await reader.scenario(account, "K")
        return found.name if found else None

    async def default() -> str | None:
        found = await reader.default_scenario(account)
        return found.key if found else None

    await writer.update_scenario(account, ScenarioRecord("K", "two", FLOW, True))
    await _eventually(name, "two")
    await writer.create_scenario(account, ScenarioRecord("L", "three", FLOW, True))
    await _eventually(default, "L")
    await writer.delete_scenario(account, "K")
    await _eventually(name, None)


async def test_own_changes_are_seen_at_once(two: tuple[PostgresStore, PostgresStore]) -> None:
    store, _ = two
    account = (await store.create_account("a", None, "secret", "cli")).id
    await store.create_scenario(account, ScenarioRecord("K", "one", FLOW, True))
    while not store._scenarios_live:
        await store.scenario(account, "K")
        await asyncio.sleep(0.01)
    assert (await store.scenario(account, "K")).name == "one"  # type: ignore[union-attr]
    await store.update_scenario(account, ScenarioRecord("K", "two", FLOW, True))
    assert (await store.scenario(account, "K")).name == "two"  # type: ignore[union-attr]
    await store.delete_scenario(account, "K")
    assert await store.scenario(account, "K") is None


async def test_a_batch_chosen_as_a_deadlocks_victim_runs_again_instead_of_failing(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    """Two API processes storing the same client message ids in another order wait for each other; the database
    breaks the circle by rolling one transaction back. That batch runs again: its request is answered, not 503."""
    store, _ = two
    account = (await store.create_account("a", None, "secret", "cli")).id
    now = time.time()

    def batch(*ids: str) -> list[AcceptItem]:
        return [AcceptItem(account, b"{}", None, [message(i) for i in ids], now, now)]

    other = await asyncpg.connect(store.dsn)
    try:
        async with other.transaction():
            # the other process's check comes later: this store's transaction is the one rolled back
            await other.execute("SET LOCAL deadlock_timeout = '10s'")
            await run_flow(other, sending.accept(store.dialect, batch("b")))
            mine = asyncio.create_task(store.accept(account, b"{}", None, [message("a"), message("b")], now, now))
            await asyncio.sleep(0.5)  # it stored "a" and waits for "b"
            await run_flow(other, sending.accept(store.dialect, batch("a")))  # waits for "a": a deadlock
    finally:
        await other.close()
    stored = await asyncio.wait_for(mine, 30)
    # the other process stored the same messages first: this request is answered as their replay
    assert [(s.message_id, s.duplicate) for s in stored] == [("a", False), ("b", False)]
