"""The console's page cursors and CSV cells (pure functions of console/routes.py)."""

from __future__ import annotations

import pytest

from omnirelay.console.routes import format_cursor, parse_cursor, safe_cell
from omnirelay.store.base import Cursor
from omnirelay.store.search import error_needle


def test_a_cursor_survives_the_query_string_exactly() -> None:
    cursor = Cursor(1733333333.1234567, 42)
    assert parse_cursor(format_cursor(cursor)) == cursor
    assert parse_cursor(format_cursor(Cursor(0.1 + 0.2, 1))) == Cursor(0.1 + 0.2, 1)


@pytest.mark.parametrize("raw", ["", "x_1", "1.5", "1.5_", "1.5_x", "nan_1", "inf_2", "1.5_2_3"])
def test_a_cursor_that_is_not_one_is_refused(raw: str) -> None:
    assert parse_cursor(raw) is None


@pytest.mark.parametrize("cell", ["=1+2", "+41793026727", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_cells_a_spreadsheet_would_run_become_text(cell: str) -> None:
    assert safe_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["", "41793026727", "EC_ABSENT_SUBSCRIBER", "a=b", "x-1", "me@example.com"])
def test_other_cells_are_left_alone(cell: str) -> None:
    assert safe_cell(cell) == cell


def test_the_error_filter_takes_error_names_only() -> None:
    assert error_needle("EC_ABSENT_SUBSCRIBER") == b'"error":"EC_ABSENT_SUBSCRIBER"'
    for bad in ("", "ec_lower", 'EC"X', "EC X", "E" * 65, "1EC"):
        with pytest.raises(ValueError):
            error_needle(bad)
