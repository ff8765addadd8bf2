"""Accept path on PostgreSQL: POST /omni/1/advanced (single-destination, or ``--destinations N`` per request)
against ``omnirelay api --processes N`` (and optionally worker processes running beside it), durably committed,
driven by wrk (closed loop) or, with ``--rate R``, by ``bench/openloop.py`` (open loop at R requests/s, latency
from each request's scheduled time).

Makes a fresh database on the given server, migrates it, starts the processes, creates the default scenario,
loads it for ``--seconds``, kills everything with SIGKILL and compares 2xx answers with the rows stored; the
database is dropped at the end. Prints the results as JSON (also written to ``--json FILE``).

    python3 -m bench.accept_pg --database postgresql://postgres@127.0.0.1:5432/postgres --api-processes 2
    python3 -m bench.accept_pg --api-processes 1 --destinations 1000 --connections 16
    python3 -m bench.accept_pg --api-processes 1 --rate 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from bench.lib import pg
from bench.lib.gateway import SCENARIO, clean_env, http, omnirelay, wait_healthy, write_config
from bench.lib.load import load_generator, run_load, send_body
from bench.lib.machine import free_port, machine, wait_quiet


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM messages"))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--api-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="worker processes running beside the API")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--destinations", type=int, default=1, help="destinations per request (default 1)")
    parser.add_argument(
        "--rate", type=float, default=None, help="open-loop load at this many requests/s (bench/openloop.py)"
    )
    parser.add_argument(
        "--load-processes", type=int, default=1, help="with --rate: generator processes sharing the schedule"
    )
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS", help="wait for an idle machine")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    client = "openloop" if args.rate is not None else "wrk"
    if client == "wrk" and wrk is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    quiet_load = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None

    folder = Path(tempfile.mkdtemp(prefix="omnirelay-accept-pg-"))
    config = write_config(folder, None)
    url = asyncio.run(pg.fresh_database(args.database))
    common = ["--config", str(config), "--database", url]
    subprocess.run([*omnirelay(), "migrate", *common], check=True, capture_output=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env()
    procs = [
        subprocess.Popen(
            [*omnirelay(), "api", *common, "--port", str(port), "--processes", str(args.api_processes)],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
    ]
    procs += [
        subprocess.Popen([*omnirelay(), "worker", *common], env=env, start_new_session=True, stdout=subprocess.DEVNULL)
        for _ in range(args.workers)
    ]
    try:
        wait_healthy(base, procs)
        status, answer = http("POST", f"{base}/omni/1/scenarios", json.dumps(SCENARIO).encode())
        assert status == 200, answer
        key = json.loads(answer)["key"]
        result = run_load(client, wrk, f"{base}/omni/1/advanced", send_body(key, args.destinations), args, folder)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait(10)
    rows = asyncio.run(_count(url))
    asyncio.run(pg.drop_database(args.database, url))
    shutil.rmtree(folder, ignore_errors=True)
    ok = int(result["ok"])
    summary = {
        "machine": machine(),
        "machine_load_before": quiet_load,
        "setup": f"PostgreSQL, {args.api_processes} API processes, {args.workers} worker process(es)",
        "api_processes": args.api_processes,
        "workers": args.workers,
        "destinations": args.destinations,
        "client": client,
        "load_generator": load_generator(client, wrk, args),
        "rate": args.rate,
        "requests_per_second": round(ok / result["duration_s"]),
        "destinations_per_second": round(ok * args.destinations / result["duration_s"]),
        "p50_ms": result["p50_ms"],
        "p90_ms": result["p90_ms"],
        "p99_ms": result["p99_ms"],
        "p999_ms": result.get("p999_ms"),
        "generator_lag_p99_ms": result.get("generator_lag_p99_ms"),
        "max_ms": result["max_ms"],
        "service_p50_ms": result.get("service_p50_ms"),
        "service_p99_ms": result.get("service_p99_ms"),
        "non2xx": result["non2xx"],
        "socket_errors": sum(int(result[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout")),
        "answered_2xx": ok,
        "rows_in_messages": rows,
        "durable": rows >= ok * args.destinations,
        "client_cpu_cores": result["client_cpu_s"] / result["duration_s"],
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
