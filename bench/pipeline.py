"""End-to-end throughput on the sandbox: API accept → (WhatsApp → SMS failover) → final report pulled.

Starts a gateway (``omnirelay serve`` on SQLite, or on PostgreSQL ``omnirelay api`` plus N ``omnirelay worker``
processes), sends ``--messages`` messages (requests of ``--per-request`` destinations, ``--concurrency`` at a
time, from an aiohttp client in this process) on one of three paths (``--path``):

* ``delivered``: WhatsApp delivers on the first step;
* ``rejected`` (default): numbers the default sandbox rules treat as "not a WhatsApp user" (ending in 7), so
  WhatsApp rejects and the message fails over to SMS, which delivers;
* ``silent``: WhatsApp never reports, its 1 s validity runs out, then SMS delivers.

It pulls ``GET /omni/1/reports?limit=1000`` until every message has its report and prints messages per second
from the first send to the last report. It then reads every message from the database and prints, per message,
the time from accept to the final outcome (``created_at`` → the state's ``done_at``) and from the WhatsApp
failure (rejection or expiry) to the SMS step's submission, p50 / p99. Results are printed as JSON (also
written to ``--json FILE``).

    python3 -m bench.pipeline --messages 20000
    python3 -m bench.pipeline --messages 20000 --path silent
    python3 -m bench.pipeline --messages 20000 --database postgresql://postgres@127.0.0.1/postgres --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.lib import pg
from bench.lib.gateway import clean_env, config_toml, omnirelay, wait_healthy
from bench.lib.machine import free_port, machine, wait_quiet
from bench.lib.traffic import PATHS, drive, failover_gaps, p50, p99

#: For the silent path: WhatsApp never reports (so its 1 s validity runs out), everything else is delivered.
SILENT_CONFIG = """
[limits]
min_validity_seconds = 1

[[sandbox.rules]]
channel = "WHATSAPP"
outcome = "EXPIRED"
"""


#: Counters of one database and of the whole server's WAL, read before and after the run: the write cost per message.
WRITE_COST = """
SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS wal, xact_commit, tup_inserted, tup_updated, tup_deleted
FROM pg_stat_database WHERE datname = current_database()
"""


async def _write_counters(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")  # this session's own counts, not a second late
        row = await conn.fetchrow(WRITE_COST)
        sizes = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    finally:
        await conn.close()
    return {**{k: int(v) for k, v in dict(row).items()}, "bytes": int(sizes or 0)}


def _write_cost(before: dict[str, int], after: dict[str, int], messages: int) -> dict[str, float]:
    """Per message: WAL bytes (the whole server's: run it on a quiet one), commits, rows written, table growth."""
    d = {k: after[k] - before[k] for k in before}
    return {
        "wal_bytes_per_message": round(d["wal"] / messages, 1),
        "commits_per_message": round(d["xact_commit"] / messages, 3),
        "rows_inserted_per_message": round(d["tup_inserted"] / messages, 2),
        "rows_updated_per_message": round(d["tup_updated"] / messages, 2),
        "rows_deleted_per_message": round(d["tup_deleted"] / messages, 2),
        "table_bytes_per_message": round(d["bytes"] / messages, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument(
        "--path",
        choices=list(PATHS),
        default="rejected",
        help="delivered on WhatsApp; WhatsApp rejected -> SMS (default); WhatsApp silent -> 1 s validity -> SMS",
    )
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", help="a PostgreSQL server URL to bench on (a fresh database is made on it)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (PostgreSQL)")
    parser.add_argument("--api-processes", type=int, default=2, help="API processes (PostgreSQL)")
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="SQLite: run `omnirelay api` and `omnirelay worker` on the file instead of one `omnirelay serve`",
    )
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds (default 900)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS", help="wait for an idle machine")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args()
    quiet_load = None
    if args.wait_quiet > 0:
        quiet_load = wait_quiet(args.wait_quiet)

    root = Path(tempfile.mkdtemp(prefix="omnirelay-pipeline-"))
    (root / "omnirelay.toml").write_text(config_toml(log_level=None) + (SILENT_CONFIG if args.path == "silent" else ""))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env()
    common = ["--config", str(root / "omnirelay.toml")]
    procs: list[subprocess.Popen[bytes]] = []
    pg_url = None
    if args.database:
        pg_url = asyncio.run(pg.fresh_database(args.database))
        subprocess.run(
            [*omnirelay(), "migrate", *common, "--database", pg_url], check=True, env=env, stdout=subprocess.DEVNULL
        )
        procs.append(
            subprocess.Popen(
                [
                    *omnirelay(),
                    "api",
                    *common,
                    "--database",
                    pg_url,
                    "--port",
                    str(port),
                    "--processes",
                    str(args.api_processes),
                ],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
            )
        )
        for _ in range(args.workers):
            procs.append(
                subprocess.Popen(
                    [*omnirelay(), "worker", *common, "--database", pg_url],
                    env=env,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                )
            )
        setup = f"PostgreSQL, {args.api_processes} API processes, {args.workers} worker process(es)"
    else:
        data = ["--data-dir", str(root / "data")]
        commands = [["serve", *common, *data, "--port", str(port)]]
        setup = "SQLite, one omnirelay serve process"
        if args.worker_process:
            commands = [["api", *common, *data, "--port", str(port)], ["worker", *common, *data]]
            setup = "SQLite, omnirelay api + omnirelay worker (two processes, one file)"
        for command in commands:
            procs.append(
                subprocess.Popen([*omnirelay(), *command], env=env, start_new_session=True, stdout=subprocess.DEVNULL)
            )
    try:
        wait_healthy(url, procs)
        before = asyncio.run(_write_counters(pg_url)) if pg_url else None
        seconds, got, _ = asyncio.run(
            drive(url, args.messages, args.per_request, args.concurrency, args.path, args.timeout)
        )
        if pg_url:
            time.sleep(1.5)  # other processes flush their statistics at most a second late
            assert before is not None
            write_cost = _write_cost(before, asyncio.run(_write_counters(pg_url)), args.messages)

            async def states() -> list[tuple[float, bytes]]:
                conn = await asyncpg.connect(pg_url)
                rows = await conn.fetch("SELECT created_at, state FROM messages")
                await conn.close()
                return [(r[0], bytes(r[1])) for r in rows]

            raw = asyncio.run(states())
        else:
            with sqlite3.connect(root / "data" / "omnirelay.db") as db:
                raw = [(r[0], r[1]) for r in db.execute("SELECT created_at, state FROM messages")]
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(30)
        if pg_url:
            asyncio.run(pg.drop_database(args.database, pg_url))
        shutil.rmtree(root, ignore_errors=True)
    gaps, totals = (sorted(x) for x in failover_gaps(raw))

    result: dict[str, Any] = {
        "machine": machine(),
        "machine_load_before": quiet_load,
        "load_generator": (
            f"aiohttp client in bench/pipeline.py: requests of {args.per_request} destinations, "
            f"{args.concurrency} at a time; reports pulled with GET /omni/1/reports?limit=1000"
        ),
        "setup": setup,
        "api_processes": args.api_processes if args.database else None,
        "workers": args.workers if args.database else None,
        "path": args.path,
        "messages": args.messages,
        "reports": got,
        "seconds": round(seconds, 2),
        "messages_per_second": round(got / seconds),
        "failover_gap_ms_p50": p50(gaps),
        "failover_gap_ms_p99": p99(gaps),
        "failovers_measured": len(gaps),
        "accept_to_final_ms_p50": p50(totals),
        "accept_to_final_ms_p99": p99(totals),
    }
    if pg_url:
        result["write_cost"] = write_cost
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
