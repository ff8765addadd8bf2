"""An outage of the database is logged in one line, without a traceback; any other error keeps its traceback."""

from __future__ import annotations

import logging
import sys

import asyncpg
import pytest

from omnirelay.store.errors import Outage, OutageLines


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        return logging.LogRecord("asyncpg.pool", logging.WARNING, __file__, 1, "Failed to restore %s", ("pool",),
                                 sys.exc_info())


@pytest.mark.parametrize("exc", [ConnectionRefusedError(111, "Connection refused"),
                                 asyncpg.ConnectionDoesNotExistError("connection was closed")])
def test_an_outage_is_one_line(exc: BaseException) -> None:
    record = _record(exc)
    assert OutageLines().filter(record)
    assert record.exc_info is None
    text = logging.Formatter().format(record)
    assert "Traceback" not in text and "\n" not in text
    assert text.startswith("Failed to restore pool (") and type(exc).__name__ in text


def test_a_bug_keeps_its_traceback() -> None:
    record = _record(KeyError("x"))
    assert OutageLines().filter(record)
    assert "Traceback" in logging.Formatter().format(record)


def test_an_outage_is_told_when_it_begins_and_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage("engine")
    with caplog.at_level(logging.WARNING, "omnirelay"):
        outage.ended()  # nothing to tell
        for _ in range(5):
            outage.began(ConnectionRefusedError(111, "Connection refused"))
        outage.ended()
        outage.ended()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("engine: the database cannot serve now (ConnectionRefusedError")
    assert lines[1].startswith("engine: the database serves again after")
