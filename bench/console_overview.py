#!/usr/bin/env python3
"""The console overview at volume: how long ``GET /console/api/overview`` takes with ``--messages`` stored (default
1,000,000) for the last hour, 24 hours and 7 days, on SQLite or (``--database postgresql://…``) PostgreSQL; and
what keeping its rollups costs the engine.

What it does:

1. migrates a fresh store and fills it directly with one account's messages, the rows ``bench/logs.py`` writes
   (1,000-destination requests; most delivered on WhatsApp, one in ten failed over to SMS, one in fifty
   undeliverable), spread over the last 7 days; lists them in ``rollup_backlog`` as migration 009 does for messages
   stored before it, and times the backfill that adds them to the rollups (``engine/rollup_backfill.py``, run
   in this process as an engine process runs it at start);
2. starts ``omnirelay api`` on it (no engine: nothing changes while it is measured), logs into the console and
   asks for the overview of each range ``--repeat`` times (one after the other, one connection): median and
   slowest answer time. The filled messages make few distinct rollup keys (one latency each, two errors); so, on
   a fresh store, it also stores for another account every key a busy hour can have (3 channels, 4 outcomes, 8
   errors, 40 latency buckets each; 374 rows an hour) for every hour of the 7 days, and times the 7-day read
   in this process (the store's query and the summary, no HTTP);
3. in this process, on a fresh store of the same kind: accepts ``--engine-messages`` messages at a time (WhatsApp
   → SMS on the sandbox, one in ten failing over; 1,000-destination requests one after the other) and runs the
   engine until all are final, in rounds that keep the rollups and rounds that do not (``EngineSettings.rollups``,
   and the accept's ``accept_rollup`` replaced for the round), alternating (``--rounds`` each); prints the
   engine's messages per second and the accept's destinations per second of each kind, and their ratios.

    python3 -m bench.console_overview                                   # SQLite, 1,000,000 messages
    python3 -m bench.console_overview --messages 100000 --repeat 5      # a quick check
    python3 -m bench.console_overview --database postgresql://postgres@127.0.0.1:5432/postgres

Load goes to 127.0.0.1 only; every database and folder made is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench.lib import fill, pg
from bench.lib.gateway import server_command, wait_healthy
from bench.lib.machine import free_port, machine, wait_quiet
from omnirelay.connectors.sandbox.connector import Sandbox
from omnirelay.console import stats
from omnirelay.domain import rollups
from omnirelay.domain.channels import Channel
from omnirelay.domain.message import initial_state
from omnirelay.domain.numbering import MccMncTable
from omnirelay.domain.pricing import PriceList
from omnirelay.domain.reports import Tariffs
from omnirelay.engine.rollup_backfill import backfill
from omnirelay.engine.worker import Engine, EngineSettings
from omnirelay.store import rows
from omnirelay.store.base import NewMessage, Store
from omnirelay.store.flow import Dialect, Flow, Rows
from omnirelay.store.flows import sending as sending_flow
from omnirelay.store.flows.engine import rollup_rows
from omnirelay.store.postgres import PostgresStore
from omnirelay.store.sqlite import SqliteStore

PASSWORD = "bench-password"
RANGES = ("1h", "24h", "7d")
DAYS_S = 7 * 86400 - 600
"""The filled messages' span: the last 7 days (less 10 minutes, so the 7-day view holds every one)."""


def tariffs() -> Tariffs:
    return Tariffs(PriceList("EUR", 0.0, [("SMS", None, 0.05), ("WHATSAPP", None, 0.01)]), MccMncTable({}))


async def open_store(url: str | None, folder: Path) -> Store:
    if url:
        return await PostgresStore.open(url)
    return SqliteStore(folder / "data" / "omnirelay.db")


async def backlog_and_backfill(url: str | None, folder: Path) -> float:
    """List every message for the backfill (as migration 009 does) and run it; returns the seconds it took."""
    sql = "INSERT INTO rollup_backlog(message, done) SELECT id, done_at IS NOT NULL FROM messages"
    if url:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    else:
        with sqlite3.connect(folder / "data" / "omnirelay.db") as conn:
            conn.execute(sql)
    store = await open_store(url, folder)
    try:
        t0 = time.monotonic()
        await backfill(store, tariffs())
        took = time.monotonic() - t0
        assert await store.rollup_backlog() == 0
        return took
    finally:
        await store.close()


class Console:
    """A console session (cookie jar) on a running gateway."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with self.opener.open(f"{base}/console/login", timeout=30) as resp:
            page = resp.read().decode()
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token, page
        form = urllib.parse.urlencode({"username": "bench", "password": PASSWORD, "csrf": token.group(1)}).encode()
        with self.opener.open(f"{base}/console/login", data=form, timeout=30) as resp:
            assert resp.url.endswith("/console/overview"), resp.url

    def overview(self, key: str) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        with self.opener.open(f"{self.base}/console/api/overview?range={key}", timeout=600) as resp:
            body = resp.read()
        return (time.perf_counter() - t0) * 1000, json.loads(body)


def measure_overview(base: str, repeat: int) -> list[dict[str, Any]]:
    console = Console(base)
    results = []
    for key in RANGES:
        console.overview(key)  # warm: the first read of an index comes from disk
        times, data = [], {}
        for _ in range(repeat):
            ms, data = console.overview(key)
            times.append(ms)
        results.append(
            {"range": key, "median_ms": statistics.median(times), "max_ms": max(times), "accepted": data["total"],
             "rollup_span_s": data["range"]["span"]}
        )
        print(f"overview {key:4} {results[-1]['median_ms']:8.1f} ms median {results[-1]['max_ms']:8.1f} ms max"
              f" {data['total']:>9,} messages counted", flush=True)
    return results


# --- the engine with and without the rollups -------------------------------------------------------------------

ENGINE_PAYLOAD = fill.payload("WA", 3600.0, "Hi")


def _no_accept_rollups(item: Any, fresh: Any) -> list[Any]:
    return []


async def engine_round(
    store: Store, account: int, messages: int, keep_rollups: bool, round_no: int
) -> tuple[float, float, float]:
    """Accept ``messages`` and run the engine until all are final; destinations accepted per second (the accepts
    run one after the other), the engine's messages per second, and the CPU time of this process (the SQLite
    writer's thread included, not the PostgreSQL server's) per message, in µs. Without rollups, the accept
    path's are left out too (``accept_rollup``, replaced for the round)."""
    sending_flow.accept_rollup = rows.accept_rollup if keep_rollups else _no_accept_rollups  # type: ignore[assignment]
    now = time.time()
    accept_s = 0.0
    for start in range(0, messages, 1000):
        batch = []
        for i in range(start, min(messages, start + 1000)):
            # …7 is not a WhatsApp user in the default sandbox rules: one in ten fails over to SMS
            phone = f"4179{round_no:02d}{i:05d}" if i % 10 else f"4179{round_no:02d}{i // 10:04d}7"
            to_json = f'{{"phoneNumber":"{phone}"}}'.encode()
            batch.append(NewMessage(f"r{round_no}-{i}", to_json, hashlib.blake2b(to_json, digest_size=16).digest(),
                                    initial_state(now, None), True, phone))
        t0 = time.perf_counter()
        await store.accept(account, ENGINE_PAYLOAD, None, batch, now, now)
        accept_s += time.perf_counter() - t0
    engine = Engine(store, {c.value: Sandbox(None) for c in Channel}, tariffs(),
                    EngineSettings(batch_size=500, rollups=keep_rollups))
    t0, cpu0 = time.perf_counter(), time.process_time()
    while True:
        if await engine.cycle():
            continue
        due = await store.next_due()
        if due is None or due > time.time() + 60:  # what is left is validity timers of messages under way
            break
        await asyncio.sleep(max(0.0, min(0.05, due - time.time())))
    return messages / accept_s, messages / (time.perf_counter() - t0), (time.process_time() - cpu0) / messages * 1e6


# --- the overview over many distinct rollup rows -----------------------------------------------------------------


def varied_rows(account: int, now: float, hours: int) -> list[rollups.Row]:
    """One message for each distinct key a busy account can have in an hour, every hour of ``hours``: 3 channels,
    4 outcomes, 8 errors, 40 latency buckets (1 ms to 17 min) for accept→final and for each channel, 3 steps."""
    channels, errors = ("WHATSAPP", "SMS", "EMAIL"), [f"EC_ERROR_{i}" for i in range(8)]
    out: list[rollups.Row] = []
    for h in range(hours):
        at = now - h * 3600
        out.append(rollups.accepted(account, at))
        for ch in channels:
            for group in (2, 3, 4, 5):
                for error in errors if group != 3 else ["NO_ERROR"]:
                    out.append((account, at, rollups.FINAL, ch, 0, group, error, 0, 1, 0.01))
            for step in (1, 2, 3):
                out.append((account, at, rollups.TRIED, ch, step, 0, "", 0, 1, 0.0))
                out.append((account, at, rollups.FAILED_OVER, ch, step, 0, "", 0, 1, 0.0))
            for bucket in range(1, 41):
                out.append((account, at, rollups.STEP_LATENCY, ch, 0, 0, "", bucket, 1, 0.0))
        for group in (2, 3, 4, 5):
            for bucket in range(1, 41):
                out.append((account, at, rollups.LATENCY, "", 0, group, "", bucket, 1, 0.0))
    return out


def _add_rollups(d: Dialect, made: list[rollups.Row]) -> Flow[None]:
    """Rollup rows stored directly, as the engine's writes store them."""
    yield Rows(d.q.upsert_rollups, rollup_rows(d, made))


async def measure_varied(url: str | None, folder: Path, repeat: int) -> dict[str, Any]:
    """The 7-day overview read in this process (store + summary, no HTTP) when every hour holds every key."""
    (folder / "varied").mkdir()
    store = await PostgresStore.open(url) if url else SqliteStore(folder / "varied" / "omnirelay.db")
    try:
        account = (await store.create_account("varied", None, "s", "bench")).id
        now = time.time()
        made = varied_rows(account, now, 7 * 24 + 1)
        await store._write(lambda: _add_rollups(store.dialect, made))
        rng = stats.choose_range({"range": "7d"}, now)
        assert isinstance(rng, stats.Range)
        times = []
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            found = await store.overview(account, rng.span, rng.since, rng.until)
            stats.summarize(found, rng, now)
            times.append((time.perf_counter() - t0) * 1000)
        rows_per_hour = len(made) // (7 * 24 + 1)
        result = {"hour_rows_read": len(made), "rows_per_hour": rows_per_hour,
                  "median_ms": statistics.median(times[1:]), "max_ms": max(times[1:])}
        print(f"overview 7d, {len(made):,} distinct hour rows ({rows_per_hour} an hour): "
              f"{result['median_ms']:.1f} ms median, {result['max_ms']:.1f} ms max", flush=True)
        return result
    finally:
        await store.close()


async def measure_engine(url: str | None, folder: Path, messages: int, rounds: int) -> dict[str, Any]:
    (folder / "engine").mkdir()
    store = await PostgresStore.open(url) if url else SqliteStore(folder / "engine" / "omnirelay.db")
    try:
        account = (await store.create_account("engine", None, "s", "bench")).id
        await engine_round(store, account, 2000, True, 99)  # warm
        rates: dict[bool, list[float]] = {True: [], False: []}
        accepts: dict[bool, list[float]] = {True: [], False: []}
        cpus: dict[bool, list[float]] = {True: [], False: []}
        for r in range(rounds):
            for keep in ((True, False) if r % 2 == 0 else (False, True)):
                number = len(rates[True]) + len(rates[False])
                accepted, rate, cpu_us = await engine_round(store, account, messages, keep, number)
                rates[keep].append(rate)
                accepts[keep].append(accepted)
                cpus[keep].append(cpu_us)
                print(f"rollups {'on ' if keep else 'off'}: engine {rate:8.0f} messages/s ({cpu_us:5.1f} µs CPU a"
                      f" message), accept {accepted:8.0f} destinations/s", flush=True)
    finally:
        await store.close()
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    a_on, a_off = statistics.median(accepts[True]), statistics.median(accepts[False])
    return {
        "messages_per_round": messages,
        "rounds_each": rounds,
        "with_rollups_per_s": round(on),
        "without_rollups_per_s": round(off),
        "ratio": round(on / off, 3),
        "accept_with_per_s": round(a_on),
        "accept_without_per_s": round(a_off),
        "accept_ratio": round(a_on / a_off, 3),
        "engine_cpu_us_with": round(statistics.median(cpus[True]), 1),
        "engine_cpu_us_without": round(statistics.median(cpus[False]), 1),
        "engine_cpu_ratio": round(statistics.median(cpus[True]) / statistics.median(cpus[False]), 3),
        "all": {"with": [round(x) for x in rates[True]], "without": [round(x) for x in rates[False]],
                "accept_with": [round(x) for x in accepts[True]], "accept_without": [round(x) for x in accepts[False]]},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=1_000_000, help="messages stored (default 1,000,000)")
    p.add_argument("--repeat", type=int, default=10, help="answers timed per range (default 10)")
    p.add_argument("--engine-messages", type=int, default=20_000, help="messages per engine round (default 20,000)")
    p.add_argument("--rounds", type=int, default=3, help="engine rounds with and without rollups, each (default 3)")
    p.add_argument("--database", help="a PostgreSQL server URL to make fresh databases on (default: SQLite)")
    p.add_argument("--engine-only", action="store_true", help="leave out steps 1 and 2 (the messages filled)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--quiet-wait", type=float, default=60, help="wait up to this long for a quiet machine (s)")
    return p.parse_args(argv)


def overview_part(args: argparse.Namespace, folder: Path, url: str | None) -> dict[str, Any]:
    """Steps 1 and 2: fill, backfill, and time the overview's answers."""
    config = folder / "omnirelay.toml"
    config.write_text(f'log_level = "WARNING"\n\n[[accounts]]\nusername = "bench"\npassword = "{PASSWORD}"\n')
    where = ["--database", url] if url else ["--data-dir", str(folder / "data")]
    subprocess.run(server_command(True, folder / "n", ["migrate", "--config", str(config), *where]), check=True,
                   capture_output=True)
    fill_s = fill.fill(url, folder / "data", args.messages, fill.rows(args.messages, time.time(), DAYS_S / 3600))
    backfill_s = asyncio.run(backlog_and_backfill(url, folder))
    print(f"backfilled the rollups of {args.messages:,} messages in {backfill_s:.0f} s", file=sys.stderr, flush=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            server_command(True, folder / "n", ["api", "--config", str(config), *where, "--port", str(port)]),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_healthy(base, [proc], log, timeout=120)
        load = wait_quiet(args.quiet_wait)
        return {
            "messages": args.messages,
            "repeat": args.repeat,
            "fill_seconds": round(fill_s, 1),
            "backfill_seconds": round(backfill_s, 1),
            "machine_load_cores": round(load, 2),
            "overview": measure_overview(base, args.repeat),
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="omnirelay-bench-overview-"))
    made: list[str] = []
    try:
        report: dict[str, Any] = {"store": "postgresql" if args.database else "sqlite", "machine": machine()}
        if not args.engine_only:
            url = asyncio.run(pg.fresh_database(args.database)) if args.database else None
            made += [url] if url else []
            report.update(overview_part(args, folder, url))
        varied_url = asyncio.run(pg.fresh_database(args.database)) if args.database else None
        if varied_url:
            made.append(varied_url)
            subprocess.run(server_command(True, folder / "n", ["migrate", "--database", varied_url]), check=True,
                           capture_output=True)
        report["varied"] = asyncio.run(measure_varied(varied_url, folder, args.repeat))
        engine_url = asyncio.run(pg.fresh_database(args.database)) if args.database else None
        if engine_url:
            made.append(engine_url)
            subprocess.run(server_command(True, folder / "n", ["migrate", "--database", engine_url]), check=True,
                           capture_output=True)
        engine = report["engine"] = asyncio.run(measure_engine(engine_url, folder, args.engine_messages, args.rounds))
        print(f"with rollups / without: engine {engine['ratio']:.3f} (CPU a message {engine['engine_cpu_ratio']:.3f}),"
              f" accept {engine['accept_ratio']:.3f}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        return 0
    finally:
        for url in made:
            asyncio.run(pg.drop_database(args.database, url))
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
