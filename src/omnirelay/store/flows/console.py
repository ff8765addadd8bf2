"""The console's message search, its overview from the rollups, and the connectors' health."""

from __future__ import annotations

from collections.abc import Callable

from omnirelay.domain import rollups
from omnirelay.store.base import Backlogged, Cursor, Found, MessageSearch, Overview
from omnirelay.store.flow import All, Dialect, Exec, Flow, Rows, Value
from omnirelay.store.flows.engine import rollup_rows
from omnirelay.store.flows.reports import view_from_row
from omnirelay.store.search import keyset, search_filters


def search_messages(
    d: Dialect, account_id: int, search: MessageSearch, after: Cursor | None, before: Cursor | None
) -> Flow[list[Found]]:
    """A page of matching messages, newest first, next to a cursor (keyset paging)."""
    w = search_filters(d, account_id, search)
    oldest_first = keyset(w, after, before)
    order = "ASC" if oldest_first else "DESC"
    where = w.sql()
    rows = yield All(d.q.search_messages.format(where=where, order=order, limit=w.arg(search.filters.limit)), *w.args)
    found = [Found(Cursor(r[4], r[0]), view_from_row(r[1:])) for r in rows]
    return found[::-1] if oldest_first else found


def count_messages(d: Dialect, account_id: int, search: MessageSearch, cap: int) -> Flow[int]:
    """How many messages match, up to ``cap`` (``cap + 1``: more)."""
    w = search_filters(d, account_id, search)
    where = w.sql()
    found = yield Value(d.q.count_messages.format(where=where, limit=w.arg(cap + 1)), *w.args)
    return int(found)


def overview(d: Dialect, account_id: int, span: int, since: float, until: float) -> Flow[Overview]:
    """The account's rollup rows of width ``span`` for messages accepted in ``[since, until)``."""
    totals = yield All(d.q.overview_totals, account_id, span, since, until)
    series = yield All(d.q.overview_series, account_id, span, since, until)
    return Overview(
        [(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), float(r[7])) for r in totals],
        [(r[0], r[1], r[2], int(r[3])) for r in series],
    )


def backfill_rollups(d: Dialect, limit: int, tally: Callable[[list[Backlogged]], list[rollups.Row]]) -> Flow[int]:
    """Add up to ``limit`` backlogged messages to the rollups, dropping them from the backlog (on PostgreSQL,
    workers starting together take different ones)."""
    rows = yield All(d.q.take_rollup_backlog, limit)
    found = [
        Backlogged(r[1], r[2], bytes(r[3]), r[4], bool(r[5]), bytes(r[6]), bytes(r[7]))
        for r in rows
        if r[1] is not None
    ]
    yield Rows(d.q.upsert_rollups, rollup_rows(d, tally(found)))
    yield Rows(d.q.drop_taken_rollup_backlog, [(r[0],) for r in rows])
    return len(rows)


def rollup_backlog(d: Dialect) -> Flow[int]:
    """How many messages are still to be added to the rollups."""
    return int((yield Value(d.q.rollup_backlog)))


def put_connector_health(d: Dialect, process: str, rows: list[tuple[str, str, bytes]], now: float) -> Flow[None]:
    """Replace an engine process's snapshot of its connectors; drop snapshots older than a day."""
    yield Exec(d.q.drop_connector_health, process, now - 86400)
    yield Rows(d.q.put_connector_health, [(process, name, channel, now, data.decode()) for name, channel, data in rows])


def connector_health(d: Dialect) -> Flow[list[tuple[str, str, str, float, bytes]]]:
    """Every stored snapshot of connectors: (process, connector, channel, at, JSON)."""
    rows = yield All(d.q.connector_health)
    return [(r[0], r[1], r[2], r[3], r[4].encode()) for r in rows]
