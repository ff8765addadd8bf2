#!/usr/bin/env python3
"""A soak on PostgreSQL: millions of messages through ``omnirelay api`` + ``omnirelay worker`` while retention
purges what is older than ``--retention-minutes``. Does it slow down, do the tables grow, does memory?

Per chunk of ``--chunk`` messages (delivered on the first step, requests of 100, reports pulled) it prints the
accepts/s and end-to-end messages/s and their ratio to the first chunk, the size of every table with its
indexes, dead rows, and the RSS of every gateway process. Goal (issue "Speed and scale, round 2"): every chunk
within 10 % of the first, sizes bounded, RSS flat.

    python3 -m bench.soak_pg --messages 10000000                # the issue's 10M (about 30 min here)
    python3 -m bench.soak_pg --messages 2000000 --chunk 250000 --retention-minutes 2 --json /tmp/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

from bench.lib import pg
from bench.lib.gateway import clean_env, config_toml, omnirelay, wait_healthy
from bench.lib.machine import free_port, machine, memory_mb
from bench.lib.traffic import drive

SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid), coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC
"""


async def _tables(url: str) -> dict[str, dict[str, int]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(SIZES)
    finally:
        await conn.close()
    return {r[0]: {"bytes": int(r[1]), "live": int(r[2]), "dead": int(r[3])} for r in rows if r[1] > 16384}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--database",
        default=None,
        help="the server (default: a cluster of its own with PostgreSQL's default settings, autovacuum on)",
    )
    p.add_argument("--messages", type=int, default=10_000_000)
    p.add_argument("--chunk", type=int, default=1_000_000, help="messages per measurement")
    p.add_argument("--retention-minutes", type=float, default=5.0, help="what retention keeps (48 h by default)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="omnirelay-soak-"))
    config = root / "omnirelay.toml"
    config.write_text(config_toml(log_level=None) + f"\n[engine]\nretention_hours = {args.retention_minutes / 60}\n")
    cluster = None if args.database else pg.Cluster().create()
    admin = args.database if cluster is None else cluster.admin
    url = asyncio.run(pg.fresh_database(admin))
    env = clean_env()
    where = ["--config", str(config), "--database", url]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    chunks: list[dict[str, Any]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([*omnirelay(), "migrate", *where], check=True, env=env, stdout=subprocess.DEVNULL)
        for command in (["api", *where, "--port", str(port)], ["worker", *where]):
            procs.append(subprocess.Popen([*omnirelay(), *command], env=env, start_new_session=True,
                                          stdout=subprocess.DEVNULL))
        wait_healthy(base, procs)
        for n in range(args.messages // args.chunk):
            first = n * args.chunk // 100
            seconds, got, accept_s = asyncio.run(
                drive(base, args.chunk, 100, args.concurrency, "delivered", 3600, first=first)
            )
            tables = asyncio.run(_tables(url))
            row = {
                "chunk": n + 1,
                "messages_so_far": (n + 1) * args.chunk,
                "accepts_per_second": round(args.chunk / accept_s),
                "messages_per_second": round(got / seconds),
                "rss_mb": [round(memory_mb(proc.pid).get("VmRSS", 0.0), 1) for proc in procs],
                "table_mb": round(sum(t["bytes"] for t in tables.values()) / 2**20, 1),
                "tables": tables,
            }
            base_row = chunks[0] if chunks else row
            row["accepts_vs_first"] = round(row["accepts_per_second"] / base_row["accepts_per_second"], 3)
            row["messages_vs_first"] = round(row["messages_per_second"] / base_row["messages_per_second"], 3)
            chunks.append(row)
            print(
                f"{row['messages_so_far']:>11,}: accepts {row['accepts_per_second']:,}/s "
                f"({row['accepts_vs_first']:.2f}), end to end {row['messages_per_second']:,}/s "
                f"({row['messages_vs_first']:.2f}), tables {row['table_mb']:,.0f} MB, RSS {row['rss_mb']} MB",
                flush=True,
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        asyncio.run(pg.drop_database(admin, url))
        if cluster is not None:
            cluster.drop()
        shutil.rmtree(root, ignore_errors=True)
    worst = min((min(c["accepts_vs_first"], c["messages_vs_first"]) for c in chunks), default=None)
    result = {
        "machine": machine(),
        "setup": "PostgreSQL, omnirelay api + omnirelay worker, delivered path, requests of 100, reports pulled",
        "server": args.database or "a cluster of its own (pg_createcluster), PostgreSQL's default settings",
        "retention_minutes": args.retention_minutes,
        "messages": len(chunks) * args.chunk,
        "chunks": chunks,
        "worst_vs_first": worst,
        "within_10_percent": worst is not None and worst >= 0.9,
        "peak_table_mb": max((c["table_mb"] for c in chunks), default=None),
        "rss_first_last_mb": [chunks[0]["rss_mb"], chunks[-1]["rss_mb"]] if chunks else None,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "chunks"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
