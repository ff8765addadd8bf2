"""A CSV file of destinations for ``omnirelay send --csv``: read and checked whole before anything is sent.

It takes what spreadsheets write: a UTF-8 byte order mark (Excel's "CSV UTF-8"), UTF-16 with its mark (Excel's
"Unicode Text", tab-separated), ``;`` or tab separators (Excel in locales whose decimal mark is a comma), and
any other encoding when it is named (``cp1252``). Every problem names the file's line, as an editor shows it.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from pathlib import Path
from typing import NamedTuple

from omnirelay.domain.validation import EMAIL, PHONE, PHONE_FORMAT

PHONE_COLUMNS = ("to", "phonenumber", "phone")
EMAIL_COLUMNS = ("email", "emailaddress")
SEPARATORS = (",", ";", "\t")
MAX_SHOWN = 10  # problems listed one a line; past this, how many more there are
#: What Excel makes of a long number in a cell formatted "General": 4.17933E+10.
_SCIENTIFIC = re.compile(r"^\d+(?:[.,]\d+)?E\+\d+$", re.IGNORECASE)
_SPACES = re.compile(r"[\s\u00a0]+")


class CsvError(Exception):
    """The file cannot be sent: each of ``problems`` is one line such as ``customers.csv:1202: ...``."""

    def __init__(self, problems: list[str], total: int | None = None) -> None:
        self.problems = problems
        self.total = total if total is not None else len(problems)
        more = self.total - len(problems)
        super().__init__("\n".join(problems + ([f"... and {more} more"] if more else [])))


class Row(NamedTuple):
    """One destination of the file, with the line it starts on."""

    line: int
    phone: str | None
    email: str | None


class CsvFile(NamedTuple):
    """A checked file: every row to send, and what identifies its content."""

    path: str
    rows: list[Row]
    digest: str
    """A hash of the file's bytes: the same file (wherever it is, whatever it is called) has the same one."""
    separator: str
    encoding: str


def _decode(path: str, data: bytes, encoding: str | None) -> tuple[str, str]:
    """The file's text and the encoding it was read in."""
    if encoding is None:
        utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        encoding = "utf-16" if utf16 else "utf-8-sig"
    else:
        try:
            if codecs.lookup(encoding).name == "utf-8":
                encoding = "utf-8-sig"  # a mark at the start is no part of the first column's name
        except LookupError:
            raise CsvError([f"{path}: unknown encoding {encoding!r} (e.g. utf-8, cp1252, latin-1, utf-16)"]) from None
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start : exc.start + 1].hex()
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding
        raise CsvError(
            [f"{path}:{line}: not {shown} (byte 0x{byte}): name the file's encoding, e.g. --encoding cp1252"]
        ) from None


def _separator(text: str) -> str:
    """The separator of the header line: the one of ``,``, ``;`` and tab it has most of (``,`` when none)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {s: header.count(s) for s in SEPARATORS}
    best = max(SEPARATORS, key=lambda s: counts[s])
    return best if counts[best] else ","


def _phone(raw: str) -> tuple[str | None, str | None]:
    """A number as the gateway takes it (spaces removed), or the problem with it."""
    number = _SPACES.sub("", raw)
    if not number:
        return None, None
    if _SCIENTIFIC.match(number):
        return None, f"the number {raw!r} was turned into a float by a spreadsheet: format the column as text"
    if not PHONE.match(number):
        return None, f"to {raw!r} {PHONE_FORMAT}"
    if number.lstrip("+").startswith("0"):
        return None, f"to {raw!r} must start with the country code, not 0"
    return number, None


def read(path: str, encoding: str | None = None) -> CsvFile:
    """Read and check the whole file; :class:`CsvError` names every line that cannot be sent."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CsvError([f"{path}: cannot read it: {exc.strerror or exc}"]) from None
    text, used = _decode(path, data, encoding)
    separator = _separator(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    problems: list[str] = []
    total = 0

    def problem(line: int, what: str) -> None:
        nonlocal total
        total += 1
        if len(problems) < MAX_SHOWN:
            problems.append(f"{path}:{line}: {what}")

    rows: list[Row] = []
    header: list[str] | None = None
    phone_at = email_at = None
    start = 1  # the line the next record starts on
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue  # a blank line, or a spreadsheet's empty row (";;;")
            if header is None:
                header = [cell.strip().lower() for cell in record]
                phone_at = next((i for i, name in enumerate(header) if name in PHONE_COLUMNS), None)
                email_at = next((i for i, name in enumerate(header) if name in EMAIL_COLUMNS), None)
                if phone_at is None and email_at is None:
                    raise CsvError(
                        [f"{path}:{line}: the first line names the columns: it needs one called 'to' (the numbers)"
                         f" or 'email', and has {', '.join(repr(c) for c in record)}"]
                    )
                continue
            extra = record[len(header) :]
            if len(record) < len(header) or any(cell.strip() for cell in extra):
                problem(line, f"{len(record)} fields, but the first line names {len(header)} columns")
                continue
            phone, bad = _phone(record[phone_at]) if phone_at is not None else (None, None)
            if bad:
                problem(line, bad)
                continue
            email = (record[email_at].strip() or None) if email_at is not None else None
            if email is not None and not EMAIL.match(email):
                problem(line, f"email {email!r} must be an e-mail address")
                continue
            if phone is None and email is None:
                problem(line, "no number" + (" and no e-mail address" if email_at is not None else ""))
                continue
            rows.append(Row(line, phone, email))
    except csv.Error as exc:
        problem(reader.line_num, f"not CSV: {exc}")
    if header is None:
        raise CsvError([f"{path}: is empty: the first line names the columns, e.g. 'to,email'"])
    if problems:
        raise CsvError(problems, total)
    if not rows:
        raise CsvError([f"{path}: has no rows below its first line"])
    return CsvFile(path, rows, hashlib.blake2b(data, digest_size=16).hexdigest(), separator, used)
