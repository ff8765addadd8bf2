"""Named SQL statements, one file of named blocks per area and database (``store/sql/<store>/queries/*.sql``).

A block starts with a ``-- name: <name>`` line and runs to the next one; the lines after it that start with
``--`` describe it. A block with no statement says that the database has nothing to do at that point of the
flow (SQLite takes no advisory lock, sends no NOTIFY): running it does nothing. Both databases must name the
same blocks (a unit test checks it), so a flow written once runs on either.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Queries:
    """The named statements of one database, read once; ``queries.<name>`` is a block's SQL text."""

    def __init__(self, blocks: dict[str, str]) -> None:
        self._blocks = blocks

    def __getattr__(self, name: str) -> str:
        try:
            return self._blocks[name]
        except KeyError:
            raise AttributeError(f"no SQL block named {name!r}") from None

    def names(self) -> set[str]:
        """The names of every block."""
        return set(self._blocks)


def parse(text: str, where: str = "<text>") -> dict[str, str]:
    """The named blocks of one file: name -> SQL (comment lines and the trailing ``;`` removed)."""
    found: dict[str, str] = {}
    marks = list(_NAME.finditer(text))
    head = text[: marks[0].start()] if marks else text
    if any(line.strip() and not line.lstrip().startswith("--") for line in head.splitlines()):
        raise ValueError(f"{where}: SQL before the first '-- name:' line")
    for mark, after in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.end() : after.start() if after else len(text)]
        lines = [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("--")]
        name = mark.group(1)
        if name in found:
            raise ValueError(f"{where}: the block {name!r} is named twice")
        found[name] = "\n".join(lines).strip().rstrip(";").strip()
    return found


def load(store: str) -> Queries:
    """Every named block of ``store`` ("sqlite" or "postgres")."""
    blocks: dict[str, str] = {}
    folder = resources.files("omnirelay.store") / "sql" / store / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse(entry.read_text(), f"{store}/queries/{entry.name}").items():
            if name in blocks:
                raise ValueError(f"{store}/queries/{entry.name}: the block {name!r} is also named in another file")
            blocks[name] = sql
    return Queries(blocks)
