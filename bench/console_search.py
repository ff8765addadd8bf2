#!/usr/bin/env python3
"""The console's message search over a large store: how long the count, a page and the CSV export take with
``--messages`` stored (default 1,000,000), on SQLite or (``--database postgresql://…``) PostgreSQL.

It fills a fresh store with bench/logs.py's rows (one account, the last 47 hours, one in fifty undeliverable, here
also with the error ``EC_ABSENT_SUBSCRIBER``), then calls the store's search methods directly, the way the console
does, each ``--repeat`` times (median and slowest):

- the count of the broad search (everything of the last 48 hours) capped as the console caps it, against the
  exact count of the same search (the reference of the run: the ratio says what the cap saves);
- counts of narrower searches (channel SMS: one in ten; the error filter: one in fifty);
- the first page, and a page half a million messages deep by its cursor (keyset), against ``OFFSET`` to the
  same depth (the reference: what keyset paging saves);
- one CSV export of the broad search (every row formatted as the console's export does), its rows a second and
  how far the process's resident memory rose during it.

    python3 -m bench.console_search                                   # SQLite, 1,000,000 messages
    python3 -m bench.console_search --messages 100000 --repeat 3      # a quick check
    python3 -m bench.console_search --database postgresql://postgres@127.0.0.1:5432/postgres

Every file and database made is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from bench.lib import fill, pg
from bench.lib.machine import machine, wait_quiet
from omnirelay.console.routes import COUNT_CAP, EXPORT_COLUMNS, export_row, safe_cell
from omnirelay.store import postgres
from omnirelay.store.base import Cursor, LogQuery, MessageSearch, Store
from omnirelay.store.postgres import PostgresStore
from omnirelay.store.rows import VIEW_COLS
from omnirelay.store.sqlite import SqliteStore

ERROR = "EC_ABSENT_SUBSCRIBER"


def rows(messages: int, now: float) -> Iterator[tuple[Any, ...]]:
    """bench/logs.py's rows (``bench/lib/fill.py``), the undeliverable ones with an error."""
    for row in fill.rows(messages, now):
        if row[10] == 2:
            row = (*row[:8], row[8].replace(b'"status":', f'"error":"{ERROR}","status":'.encode(), 1), *row[9:])
        yield row


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, Any]:
    await fn()  # warm: the first read of an index comes from disk
    times, answer = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        answer = await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2), "answer": answer}


async def _sql(store: Store, sql: str, *args: Any) -> list[Any]:
    if isinstance(store, PostgresStore):
        return list(await store.pool.fetch(sql.replace("?", "${}").format(*range(1, len(args) + 1)), *args))
    assert isinstance(store, SqliteStore)
    return store._all(sql, args)


async def offset_page(store: Store, since: float, offset: int) -> int:
    """The reference for deep pages: the same page by OFFSET (what keyset paging avoids), same columns."""
    found = await _sql(
        store,
        f"SELECT m.id, {VIEW_COLS} FROM messages m JOIN requests r ON r.id = m.request_id WHERE m.account_id = 1"
        " AND m.created_at >= ? ORDER BY m.created_at DESC, m.id DESC LIMIT 51 OFFSET ?",
        since,
        offset,
    )
    return len(found)


async def cursor_at(store: Store, depth: int) -> Cursor:
    found = await _sql(
        store, "SELECT created_at, id FROM messages WHERE account_id = 1 ORDER BY created_at DESC, id DESC"
        " LIMIT 1 OFFSET ?", depth - 1,
    )
    return Cursor(found[0][0], found[0][1])


async def export(store: Store, account: int, search: MessageSearch) -> dict[str, Any]:
    """The console's export loop, writing to nowhere: rows, seconds, and how far the process's resident memory
    rose above where it started (sampled after every page)."""
    start_rss = peak_rss = _rss()
    t0 = time.perf_counter()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    total, after, size = 0, None, 0
    while True:
        found = await store.search_messages(account, search, after)
        for item in found:
            writer.writerow([safe_cell(v) for v in export_row(item.view)])
        size += len(out.getvalue().encode())
        out.seek(0)
        out.truncate()
        total += len(found)
        peak_rss = max(peak_rss, _rss())
        if len(found) < search.filters.limit:
            break
        after = found[-1].cursor
    seconds = time.perf_counter() - t0
    return {"rows": total, "seconds": round(seconds, 1), "rows_per_s": round(total / seconds),
            "csv_megabytes": round(size / 1e6, 1), "rss_rise_mb": round((peak_rss - start_rss) / 1e6, 1)}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def measure(store: Store, messages: int, repeat: int, now: float) -> list[dict[str, Any]]:
    since = now - 48 * 3600
    broad = MessageSearch(LogQuery(since=since, limit=51))
    results: list[dict[str, Any]] = []

    async def add(name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        result = {"what": name, **await timed(fn, repeat)}
        if isinstance(result["answer"], list):
            result["answer"] = f"{len(result['answer'])} rows"
        results.append(result)
        print(f"{name:58} {result['median_ms']:9.1f} ms median {result['max_ms']:9.1f} ms max  {result['answer']}",
              flush=True)

    await add("count, exact (reference)", lambda: store.count_messages(1, broad, 10**9))
    await add(f"count, capped at {COUNT_CAP:,} (as the console)", lambda: store.count_messages(1, broad, COUNT_CAP))
    sms = MessageSearch(LogQuery(since=since, channel="SMS", limit=51))
    await add("count, channel=SMS (1 in 10), capped", lambda: store.count_messages(1, sms, COUNT_CAP))
    errors = MessageSearch(LogQuery(since=since, limit=51), ERROR)
    await add(f"count, error={ERROR} (1 in 50), capped", lambda: store.count_messages(1, errors, COUNT_CAP))
    absent = MessageSearch(LogQuery(since=since, limit=51), "EC_NOT_THERE")
    await add("count, an error no message has (reads all)", lambda: store.count_messages(1, absent, COUNT_CAP))
    await add("first page (51 rows)", lambda: store.search_messages(1, broad))
    await add(f"first page, error={ERROR}", lambda: store.search_messages(1, errors))
    depth = messages // 2
    deep = await cursor_at(store, depth)
    await add(f"page {depth:,} deep by cursor (keyset)", lambda: store.search_messages(1, broad, deep))
    await add(f"page {depth:,} deep by OFFSET (reference)", lambda: offset_page(store, since, depth))
    exported = await export(store, 1, MessageSearch(LogQuery(since=since, limit=1000)))
    print(f"export: {exported}", flush=True)
    results.append({"what": "CSV export of everything", **exported})
    return results


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    now = time.time()
    if args.database:
        url = await pg.fresh_database(args.database)
        try:
            await postgres.migrate(url)
            t0 = time.monotonic()
            await fill.fill_postgres(url, args.messages, rows(args.messages, now))
            fill_s = time.monotonic() - t0
            store: Store = await PostgresStore.open(url)
            try:
                wait_quiet(args.quiet_wait)
                results = await measure(store, args.messages, args.repeat, now)
            finally:
                await store.close()
        finally:
            await pg.drop_database(args.database, url)
    else:
        path = folder / "omnirelay.db"
        await SqliteStore(path).close()  # migrated
        t0 = time.monotonic()
        fill.fill_sqlite(path, args.messages, rows(args.messages, now))
        fill_s = time.monotonic() - t0
        store = SqliteStore(path)
        try:
            wait_quiet(args.quiet_wait)
            results = await measure(store, args.messages, args.repeat, now)
        finally:
            await store.close()
    return {"store": "postgresql" if args.database else "sqlite", "messages": args.messages,
            "fill_seconds": round(fill_s, 1), "machine": machine(), "results": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--database", help="a PostgreSQL server URL to make a fresh database on (default: SQLite)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--quiet-wait", type=float, default=60, help="wait up to this long for a quiet machine (s)")
    args = p.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="omnirelay-bench-search-"))
    try:
        report = asyncio.run(run(args, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
