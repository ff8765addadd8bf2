"""Integration fixtures: ``store`` is each real store in turn, a fresh SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from omnirelay.store.base import Store
from omnirelay.store.postgres import PostgresStore
from omnirelay.store.sqlite import SqliteStore
from tests.pg import create_database, drop_database


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "omnirelay.db")
        yield sqlite
        await sqlite.close()
    else:
        url = await create_database()
        pg = await PostgresStore.open(url)
        yield pg
        await pg.close()
        await drop_database(url)
