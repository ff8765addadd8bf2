"""Console sessions in the store, on a real SQLite file and a fresh PostgreSQL database: a session lives until
it expires, is logged out, its account's password changes or its account is removed."""

from __future__ import annotations

import pytest

from omnirelay.store.base import Store

pytestmark = pytest.mark.timeout(120)


async def test_a_session_until_it_ends(store: Store) -> None:
    a = await store.create_account("a", "scrypt$a", "s", "cli")
    b = await store.create_account("b", "scrypt$b", "s", "cli")
    await store.add_console_session("ta", a.id, "scrypt$a", 2000.0, 1000.0)
    await store.add_console_session("tb", b.id, "scrypt$b", 2000.0, 1000.0)
    found = await store.console_session("ta", 1500.0)
    assert found is not None and (found.id, found.username) == (a.id, "a")
    assert await store.console_session("tx", 1500.0) is None
    assert await store.console_session("ta", 2000.0) is None  # expired

    await store.end_console_session("ta")
    assert await store.console_session("ta", 1500.0) is None
    assert await store.console_session("tb", 1500.0) is not None  # another session is untouched

    await store.set_password_hash(b.id, "scrypt$new")
    assert await store.console_session("tb", 1500.0) is None


async def test_a_removed_account_takes_its_sessions_and_expired_ones_go(store: Store) -> None:
    a = await store.create_account("a", "scrypt$a", "s", "cli")
    await store.add_console_session("old", a.id, "scrypt$a", 1100.0, 1000.0)
    await store.add_console_session("t1", a.id, "scrypt$a", 9000.0, 1000.0)
    await store.add_console_session("t2", a.id, "scrypt$a", 9000.0, 1200.0)  # drops "old", expired by now
    assert await store.console_session("t1", 1300.0) is not None
    assert await store.console_session("old", 1050.0) is None
    assert await store.remove_account("a")
    assert await store.console_session("t1", 1300.0) is None
    again = await store.create_account("a", "scrypt$a", "s", "cli")
    assert again.id != a.id
    assert await store.console_session("t2", 1300.0) is None
