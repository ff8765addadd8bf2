"""The embedded store runs on a file only (see ARCHITECTURE.md, "no in-memory store")."""

import pytest

from omnirelay.store.sqlite import SqliteStore


@pytest.mark.parametrize("path", [":memory:", "file:x?mode=memory&cache=shared"])
def test_the_embedded_store_refuses_an_in_memory_database(path: str) -> None:
    with pytest.raises(ValueError, match="needs a file"):
        SqliteStore(path)
