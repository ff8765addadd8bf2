#!/usr/bin/env python3
"""``GET /omni/1/logs`` over a large store: how long each filter takes with ``--messages`` stored (default
1,000,000), on SQLite or (``--database postgresql://…``) PostgreSQL.

What it does:

1. migrates a fresh store (a temporary SQLite file, or a fresh database on the given PostgreSQL server) and
   fills it directly (``bench/lib/fill.py``) with the rows one account's messages leave, as the gateway writes
   them: ``--messages`` messages in 1,000-destination requests (a bulk id each) spread over the last 47 hours.
   Most are German numbers (MCC 262) sent from ``WhatsAppSender`` and delivered on WhatsApp; one in ten failed
   over to SMS (``InfoSMS``), one in fifty is undeliverable. The oldest 100 are different: Swiss numbers under a
   configured prefix (MCC 228, MNC 01) sent from ``RareSender``; a filter for them must read past every newer
   message;
2. starts ``omnirelay api`` on it (no engine: nothing changes while it is measured);
3. sends each query ``--repeat`` times (one after the other, one connection) and prints the median and the
   slowest answer time, and how many entries came back. Queries: no filter; ``from``, ``mcc`` common and rare;
   ``mnc``; ``mcc`` + ``mnc``; ``generalStatus``; ``channel``; ``bulkId``, ``messageId`` and ``to`` of the oldest
   message; rare ones also with ``limit=1000``.

    python3 -m bench.logs                                  # SQLite, 1,000,000 messages (fill ~1-2 minutes)
    python3 -m bench.logs --messages 100000 --repeat 10    # a quick check
    python3 -m bench.logs --database postgresql://postgres@127.0.0.1:5432/postgres

Load goes to 127.0.0.1 only; every database and folder made is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.lib import fill, pg
from bench.lib.gateway import API_KEY, server_command, wait_healthy
from bench.lib.machine import free_port, machine, wait_quiet


def queries() -> list[tuple[str, str]]:
    oldest = "m0000000"
    return [
        ("no filter", ""),
        ("from, common (WhatsAppSender)", "from=WhatsAppSender"),
        ("from, 100 oldest (RareSender)", "from=RareSender"),
        ("from, 100 oldest, limit=1000", "from=RareSender&limit=1000"),
        ("mcc, common (262)", "mcc=262"),
        ("mcc, 100 oldest (228)", "mcc=228"),
        ("mnc, 100 oldest (01)", "mnc=01"),
        ("mcc + mnc, 100 oldest (228, 01)", "mcc=228&mnc=01"),
        ("mcc + mnc, 100 oldest, limit=1000", "mcc=228&mnc=01&limit=1000"),
        ("from + mcc, 100 oldest", "from=RareSender&mcc=228"),
        ("generalStatus=UNDELIVERABLE (1 in 50)", "generalStatus=UNDELIVERABLE"),
        ("channel=SMS (1 in 10)", "channel=SMS"),
        ("bulkId of the oldest request", "bulkId=bulk-0001"),
        ("messageId of the oldest", f"messageId={oldest}"),
        ("to, the oldest number", "to=41790000000"),
    ]


def measure(base: str, query: str, repeat: int) -> dict[str, Any]:
    headers = {"Authorization": f"App {API_KEY}"}
    times, count = [], 0
    for _ in range(repeat):
        request = urllib.request.Request(f"{base}/omni/1/logs?{query}", headers=headers)
        t0 = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as resp:
            body = resp.read()
        times.append((time.perf_counter() - t0) * 1000)
        count = len(json.loads(body)["results"])
    return {"median_ms": statistics.median(times), "max_ms": max(times), "entries": count}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=1_000_000, help="messages stored (default 1,000,000)")
    p.add_argument("--repeat", type=int, default=20, help="answers timed per query (default 20)")
    p.add_argument("--database", help="a PostgreSQL server URL to make a fresh database on (default: SQLite)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--quiet-wait", type=float, default=120, help="wait up to this long for a quiet machine (s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="omnirelay-bench-logs-"))
    config = folder / "omnirelay.toml"
    config.write_text(
        f'log_level = "WARNING"\n\n[[accounts]]\nusername = "bench"\napi_keys = ["{API_KEY}"]\n\n'
        '[mcc_mnc]\nprefixes = { "4179" = "01" }\n'
    )
    url = asyncio.run(pg.fresh_database(args.database)) if args.database else None
    where = ["--database", url] if url else ["--data-dir", str(folder / "data")]
    proc = None
    try:
        subprocess.run(
            server_command(True, folder / "n", ["migrate", "--config", str(config), *where]),
            check=True,
            capture_output=True,
        )
        fill_s = fill.fill(url, folder / "data", args.messages, fill.rows(args.messages, time.time()))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = folder / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                server_command(True, folder / "n", ["api", "--config", str(config), *where, "--port", str(port)]),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_healthy(base, [proc], log, timeout=120)
        load = wait_quiet(args.quiet_wait)
        results = []
        for name, query in queries():
            measure(base, query, 1)  # warm: the first read of an index comes from disk
            result = {"query": name, "params": query, **measure(base, query, args.repeat)}
            results.append(result)
            print(
                f"{name:40} {result['median_ms']:8.1f} ms median {result['max_ms']:8.1f} ms max"
                f" {result['entries']:5} entries",
                flush=True,
            )
        report = {
            "store": "postgresql" if url else "sqlite",
            "messages": args.messages,
            "repeat": args.repeat,
            "fill_seconds": round(fill_s, 1),
            "machine_load_cores": round(load, 2),
            "machine": machine(),
            "results": results,
        }
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        if url:
            asyncio.run(pg.drop_database(args.database, url))
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
