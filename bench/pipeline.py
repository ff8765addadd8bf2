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

    python bench/pipeline.py --messages 20000
    python bench/pipeline.py --messages 20000 --path silent
    python bench/pipeline.py --messages 20000 --database postgresql://postgres@127.0.0.1/postgres --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec

sys.path.insert(0, str(Path(__file__).parent))
import _pg

KEY = "bench-key"
CONFIG = f"""
[[accounts]]
username = "bench"
password = "bench"
api_keys = ["{KEY}"]
"""
FLOW = [{"from": "WA", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _omnirelay() -> list[str]:
    beside = Path(sys.executable).parent / "omnirelay"
    return [str(beside)] if beside.exists() else ["omnirelay"]


def _wait_health(url: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a gateway process exited at start")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gateway did not answer /health")


#: The sandbox paths: the last digit of the numbers (README's default rules) and the WhatsApp content.
PATHS = {
    "delivered": ("0", {"text": "Hello on WhatsApp"}),  # delivered on the first step
    "rejected": ("7", {"text": "Hello on WhatsApp"}),  # not a WhatsApp user: fails over to SMS at once
    "silent": ("5", {"text": "Hello on WhatsApp", "validityPeriod": 1, "validityPeriodTimeUnit": "SECONDS"}),
}
#: For the silent path: WhatsApp never reports (so its 1 s validity runs out), everything else is delivered.
SILENT_CONFIG = """
[limits]
min_validity_seconds = 1

[[sandbox.rules]]
channel = "WHATSAPP"
outcome = "EXPIRED"
"""


async def _drive(
    url: str, total: int, per_request: int, concurrency: int, path: str, timeout: float, first: int = 0
) -> tuple[float, int, float]:
    """Send ``total`` messages on ``path`` and pull their reports; (seconds to the last report, reports, seconds to
    the last accept). ``first`` numbers the requests on from an earlier call (destinations stay distinct)."""
    headers = {"Authorization": f"App {KEY}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=concurrency + 2)) as s:
        async with s.post(f"{url}/omni/1/scenarios", json={"flow": FLOW, "default": True}) as r:
            key = (await r.json())["key"]
        requests = total // per_request
        queue: asyncio.Queue[int] = asyncio.Queue()
        for b in range(first, first + requests):
            queue.put_nowait(b)
        got = 0

        async def sender() -> None:
            while not queue.empty():
                b = queue.get_nowait()
                body = {
                    "scenarioKey": key,
                    "destinations": [
                        {"to": {"phoneNumber": f"4179{b:06d}{i:03d}{PATHS[path][0]}"}} for i in range(per_request)
                    ],
                    "whatsApp": PATHS[path][1],
                    "sms": {"text": "Hello by SMS"},
                }
                async with s.post(f"{url}/omni/1/advanced", json=body) as r:
                    assert r.status == 200, await r.text()

        async def poller() -> None:
            nonlocal got
            deadline = time.monotonic() + timeout
            while got < total:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {got} of {total} reports within {timeout:.0f} s")
                async with s.get(f"{url}/omni/1/reports?limit=1000") as r:
                    n = len((await r.json())["results"])
                got += n
                if n == 0:
                    await asyncio.sleep(0.02)

        started = time.perf_counter()
        accepted_at: list[float] = []

        async def senders() -> None:
            await asyncio.gather(*(sender() for _ in range(concurrency)))
            accepted_at.append(time.perf_counter())

        await asyncio.gather(poller(), senders())
        return time.perf_counter() - started, got, accepted_at[0] - started


class _Attempt(msgspec.Struct):
    step: int
    state: str
    started_at: float
    done_at: float | None = None


class _State(msgspec.Struct):
    attempts: list[_Attempt] = []
    done_at: float | None = None


def _failover_gaps(states: list[tuple[float, bytes]]) -> tuple[list[float], list[float]]:
    """Milliseconds from the WhatsApp step's failure (rejection or expiry) to the SMS submission, and from accept
    to the final outcome,
    per message."""
    decoder = msgspec.json.Decoder(_State)
    gaps = []
    totals = []
    for created_at, raw in states:
        state = decoder.decode(raw)
        if state.done_at is not None:
            totals.append((state.done_at - created_at) * 1000)
        attempts = state.attempts
        wa = next((a for a in attempts if a.step == 0 and a.state in ("REJECTED", "EXPIRED")), None)
        sms = next((a for a in attempts if a.step == 1 and a.state not in ("PENDING", "SKIPPED")), None)
        if wa is not None and wa.done_at is not None and sms is not None:
            gaps.append((sms.started_at - wa.done_at) * 1000)
    return gaps, totals


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
        from accept import wait_quiet

        quiet_load = wait_quiet(args.wait_quiet)

    root = Path(tempfile.mkdtemp(prefix="omnirelay-pipeline-"))
    (root / "omnirelay.toml").write_text(CONFIG + (SILENT_CONFIG if args.path == "silent" else ""))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
    common = ["--config", str(root / "omnirelay.toml")]
    procs: list[subprocess.Popen[bytes]] = []
    pg_url = None
    if args.database:
        pg_url = asyncio.run(_pg.create(args.database))
        subprocess.run(
            [*_omnirelay(), "migrate", *common, "--database", pg_url], check=True, env=env, stdout=subprocess.DEVNULL
        )
        procs.append(
            subprocess.Popen(
                [
                    *_omnirelay(),
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
                    [*_omnirelay(), "worker", *common, "--database", pg_url],
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
                subprocess.Popen([*_omnirelay(), *command], env=env, start_new_session=True, stdout=subprocess.DEVNULL)
            )
    try:
        _wait_health(url, procs)
        before = asyncio.run(_write_counters(pg_url)) if pg_url else None
        seconds, got, _ = asyncio.run(
            _drive(url, args.messages, args.per_request, args.concurrency, args.path, args.timeout)
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
            asyncio.run(_pg.drop(args.database, pg_url))
        shutil.rmtree(root, ignore_errors=True)
    gaps, totals = (sorted(x) for x in _failover_gaps(raw))
    from accept import machine

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
        "failover_gap_ms_p50": round(statistics.median(gaps), 1) if gaps else None,
        "failover_gap_ms_p99": round(gaps[int(len(gaps) * 0.99) - 1], 1) if gaps else None,
        "failovers_measured": len(gaps),
        "accept_to_final_ms_p50": round(statistics.median(totals), 1) if totals else None,
        "accept_to_final_ms_p99": round(totals[int(len(totals) * 0.99) - 1], 1) if totals else None,
    }
    if pg_url:
        result["write_cost"] = write_cost
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
