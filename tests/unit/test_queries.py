"""The named SQL blocks: read as written, and the same names for both databases (a flow runs on either)."""

import pytest

from omnirelay.store import queries


def test_a_block_runs_to_the_next_name_without_its_comments_or_final_semicolon() -> None:
    blocks = queries.parse(
        "-- the file's own comment\n\n-- name: one\n-- what it does\nSELECT 1\n  FROM t;\n\n"
        "-- name: none\n-- (nothing)\n"
    )
    assert blocks == {"one": "SELECT 1\n  FROM t", "none": ""}


@pytest.mark.parametrize(
    "text", ["SELECT 1;\n-- name: a\nSELECT 2", "-- name: a\nSELECT 1\n-- name: a\nSELECT 2"]
)
def test_sql_outside_a_block_or_a_name_given_twice_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        queries.parse(text)


def test_both_databases_name_the_same_blocks() -> None:
    sqlite, postgres = queries.load("sqlite").names(), queries.load("postgres").names()
    assert sqlite, "no blocks found: the package data is missing"
    assert sqlite - postgres == set() and postgres - sqlite == set()


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no SQL block named 'nope'"):
        _ = queries.load("sqlite").nope

