"""The inbound SMS settings: numbers belong to one account each, and are numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnirelay.config import ConfigError, load


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "omnirelay.toml"
    path.write_text(text)
    return str(path)


def test_inbound_numbers_and_keywords_are_read(tmp_path: Path) -> None:
    settings = load(write(tmp_path, """
[[accounts]]
username = "a"
password = "x"
inbound_numbers = ["+4915790000001", "12345"]
inbound_keywords = ["QUIZ"]

[smpp]
inbound_dedupe_seconds = 60
inbound_part_timeout_seconds = 120
"""), environ={})
    (account,) = settings.accounts
    assert account.inbound_numbers == ["+4915790000001", "12345"] and account.inbound_keywords == ["QUIZ"]
    assert (settings.smpp.inbound_dedupe_seconds, settings.smpp.inbound_part_timeout_seconds) == (60, 120)


def test_a_number_declared_by_two_accounts_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """
[[accounts]]
username = "a"
password = "x"
inbound_numbers = ["+4915790000001"]

[[accounts]]
username = "b"
password = "y"
inbound_numbers = ["4915790000001"]
""")
    with pytest.raises(ConfigError, match="declared by two accounts: 'a' and 'b'"):
        load(path, environ={})


def test_a_number_that_is_not_one_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """
[[accounts]]
username = "a"
password = "x"
inbound_numbers = ["+49 157 900"]
""")
    with pytest.raises(ConfigError, match="is not a number"):
        load(path, environ={})


def test_a_part_timeout_of_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inbound_part_timeout_seconds"):
        load(write(tmp_path, "[smpp]\ninbound_part_timeout_seconds = 0\n"), environ={})
