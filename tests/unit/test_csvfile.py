"""Reading a CSV file of destinations as spreadsheets write them, and naming the line of every problem."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from omnirelay.csvfile import MAX_SHOWN, CsvError, Row, read


def write(tmp_path: Path, data: bytes, name: str = "to.csv") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def problems(path: str, encoding: str | None = None) -> list[str]:
    with pytest.raises(CsvError) as caught:
        read(path, encoding)
    return caught.value.problems


def test_plain_comma_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"to,name,email\n41790000001,a,a@example.com\n+41 79 000 00 02,b,\n")
    got = read(path)
    assert got.rows == [Row(2, "41790000001", "a@example.com"), Row(3, "+41790000002", None)]
    assert (got.separator, got.encoding) == (",", "utf-8-sig")


def test_excel_utf8_with_bom_and_semicolons(tmp_path: Path) -> None:
    path = write(tmp_path, codecs.BOM_UTF8 + "Name;To;E-Mail\r\nZoë;41790000001;\r\n;;\r\n".encode())
    got = read(path)
    assert got.separator == ";"
    assert got.rows == [Row(2, "41790000001", None)]  # the BOM is no part of "Name"; the empty row is skipped


def test_a_declared_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "to;name\r\n41790000001;Zoë Müller\r\n".encode("cp1252"))
    assert problems(path) == [f"{path}:2: not UTF-8 (byte 0xeb): name the file's encoding, e.g. --encoding cp1252"]
    got = read(path, "cp1252")
    assert got.rows == [Row(2, "41790000001", None)] and got.encoding == "cp1252"
    assert problems(path, "klingon") == [f"{path}: unknown encoding 'klingon' (e.g. utf-8, cp1252, latin-1, utf-16)"]


def test_excel_unicode_text_is_utf16_with_tabs(tmp_path: Path) -> None:
    path = write(tmp_path, "to\tname\r\n41790000001\tZoë\r\n".encode("utf-16"))
    got = read(path)
    assert got.rows == [Row(2, "41790000001", None)] and got.separator == "\t"


def test_every_bad_line_is_named_as_an_editor_counts_lines(tmp_path: Path) -> None:
    lines = ["to,note"] + [f"4179{i:07d},ok" for i in range(1, 1300)]
    lines[1201] = "079123,leading zero"  # line 1202
    lines[1250] = "41790000001"  # line 1251: a field short
    lines[1260] = '41790000002,"a note\nover two lines"'  # lines 1261-1262: one record
    lines[1270] = "4.17933E+10,excel"  # line 1272 (the record above took two lines)
    path = write(tmp_path, "\n".join(lines).encode())
    assert problems(path) == [
        f"{path}:1202: to '079123' must start with the country code, not 0",
        f"{path}:1251: 1 fields, but the first line names 2 columns",
        f"{path}:1272: the number '4.17933E+10' was turned into a float by a spreadsheet: format the column as text",
    ]


def test_short_and_long_rows(tmp_path: Path) -> None:
    path = write(tmp_path, b"to,name\n41790000001,a,,\n41790000002,b,extra\n41790000003\n")
    assert problems(path) == [
        f"{path}:3: 3 fields, but the first line names 2 columns",
        f"{path}:4: 1 fields, but the first line names 2 columns",
    ]  # line 2's extra fields are empty: a spreadsheet's trailing separators


def test_bad_numbers_and_addresses(tmp_path: Path) -> None:
    path = write(tmp_path, b"to,email,name\nabc,,\n,not-an-address,\n,,Zo\xc3\xab\n,x@example.com,\n")
    assert problems(path) == [
        f"{path}:2: to 'abc' must be a phone number in international format, e.g. 41793026727",
        f"{path}:3: email 'not-an-address' must be an e-mail address",
        f"{path}:4: no number and no e-mail address",
    ]


def test_many_problems_are_counted_past_the_ones_shown(tmp_path: Path) -> None:
    path = write(tmp_path, b"to\n" + b"x\n" * 25)
    with pytest.raises(CsvError) as caught:
        read(path)
    assert len(caught.value.problems) == MAX_SHOWN and caught.value.total == 25
    assert str(caught.value).splitlines()[-1] == f"... and {25 - MAX_SHOWN} more"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "{path}: is empty: the first line names the columns, e.g. 'to,email'"),
        (b"to\n", "{path}: has no rows below its first line"),
        (b"name,city\na,b\n", "{path}:1: the first line names the columns: it needs one called 'to' (the numbers)"
                              " or 'email', and has 'name', 'city'"),
        (b'to\n"41790000001\n', '{path}:2: not CSV: unexpected end of data'),
    ],
)
def test_files_that_cannot_be_sent(tmp_path: Path, data: bytes, expected: str) -> None:
    path = write(tmp_path, data)
    assert problems(path) == [expected.format(path=path)]


def test_a_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nowhere.csv")
    assert problems(path) == [f"{path}: cannot read it: No such file or directory"]
    assert problems(str(tmp_path)) == [f"{tmp_path}: cannot read it: Is a directory"]


def test_the_digest_is_the_content_not_the_name(tmp_path: Path) -> None:
    first = read(write(tmp_path, b"to\n41790000001\n", "a.csv"))
    copy = read(write(tmp_path, b"to\n41790000001\n", "b.csv"))
    other = read(write(tmp_path, b"to\n41790000002\n", "c.csv"))
    assert first.digest == copy.digest != other.digest
