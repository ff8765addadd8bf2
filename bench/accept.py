#!/usr/bin/env python3
"""Accept-path benchmark: how many POST /omni/1/advanced requests (and destinations) one
``omnirelay serve`` process accepts durably per second.

What it does, self-contained:

1. writes a config (one account ``bench`` with API key ``bench-key``; optionally
   ``sqlite_synchronous = "NORMAL"``), starts ``omnirelay serve`` on a fresh temporary data folder and a
   free loopback port, and waits for ``/health``;
2. creates a default scenario (WHATSAPP then SMS);
3. drives load with ``wrk`` (a generated Lua script posts the same body on every request; closed loop, as
   fast as the server answers) or, when wrk is missing or ``--client aiohttp`` is given, with an aiohttp
   load generator in this process; with ``--rate R`` instead with ``bench/openloop.py`` in a process of
   its own: an open loop at a constant R requests/s whose latency counts from each request's scheduled
   time (for "p99 at half load": ``--rate`` = half the full-load requests/s);
4. stops the server with SIGKILL (no graceful shutdown: whatever was answered 2xx must already be on disk)
   and counts the rows of ``messages`` and ``requests`` in ``<data-dir>/omnirelay.db``;
5. prints requests/s, destinations/s, p50/p99 latency, non-2xx answers, the durability check, the number
   of writer (group-commit) transactions, and the CPU the server and the load generator used.

wrk is the Debian package ``wrk`` (``apt-get update && apt-get install -y wrk``).

Examples::

    python3 -m bench.accept --destinations 1 --seconds 15 --connections 64
    python3 -m bench.accept --destinations 1000 --seconds 15 --connections 16
    python3 -m bench.accept --destinations 1 --synchronous NORMAL
    python3 -m bench.accept --destinations 1 --rate 1700 --seconds 15   # open loop at 1,700 requests/s
    python3 -m bench.accept --destinations 1 --profile /tmp/profile.txt   # py-spy during the load

Load traffic goes to 127.0.0.1 only, and every run stops by itself after ``--seconds``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.lib.gateway import SCENARIO, http, server_command, wait_healthy, write_config
from bench.lib.load import load_generator, run_load, send_body
from bench.lib.machine import cpu_seconds, free_port, machine, machine_busy_seconds, thread_cpu_seconds, wait_quiet

# --- profile -------------------------------------------------------------------------------------------


def start_profiler(pid: int, seconds: float, out: Path, gil: bool) -> subprocess.Popen[bytes] | None:
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        print("py-spy not found (pip install py-spy): no profile", file=sys.stderr)
        return None
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(out.suffix, "raw")
    cmd = [
        pyspy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "100",
        "--threads",
        "--format",
        fmt,
        "--output",
        str(out),
    ]
    cmd += ["--gil"] if gil else ["--idle"]
    print("profile:", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# --- main ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=int, default=15, help="load duration (default 15)")
    p.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--destinations", type=int, default=1, help="destinations per request, e.g. 1 or 1000")
    p.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default=None,
        help="write sqlite_synchronous into the config (default: none, i.e. the FULL default)",
    )
    p.add_argument(
        "--client",
        choices=["auto", "wrk", "aiohttp"],
        default="auto",
        help="load generator (auto: wrk when installed, else aiohttp; openloop when --rate is given)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="REQUESTS_PER_S",
        help="open-loop load at this constant rate with bench/openloop.py (latency from the scheduled time), "
        "instead of wrk's closed loop",
    )
    p.add_argument(
        "--load-processes",
        type=int,
        default=1,
        help="with --rate: generator processes sharing the schedule (bench/openloop.py --processes)",
    )
    p.add_argument(
        "--plain", action="store_true", help="run the plain `omnirelay` console script (no writer-transaction count)"
    )
    p.add_argument(
        "--worker-process",
        action="store_true",
        help="run `omnirelay api` with the engine in an `omnirelay worker` process beside it (both on the "
        "SQLite file) instead of one `omnirelay serve`",
    )
    p.add_argument(
        "--pause-engine",
        action="store_true",
        help="diagnostic: keep the engine from running during the load (not how the product runs), "
        "to see what the accept path alone reaches",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="diagnostic: sys.setswitchinterval in the server (Python's default is 0.005)",
    )
    p.add_argument(
        "--graceful", action="store_true", help="stop the server with SIGTERM instead of SIGKILL before counting rows"
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the server with py-spy during the load: .svg flamegraph, .json speedscope, "
        "anything else raw collapsed stacks (also summarised by bench/pyspy_top.py)",
    )
    p.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (py-spy --gil) instead of "
        "every thread, idle included (--idle)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the machine to be idle (for shared machines)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary data folder and print its path")
    p.add_argument("--verbose", action="store_true", help="print wrk's own output too")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    client = args.client
    if args.rate is not None:
        client = "openloop"
    elif client == "auto":
        client = "wrk" if wrk else "aiohttp"
        if not wrk:
            print(
                "wrk is not installed: using the slower aiohttp client. For real figures install it:\n"
                "    apt-get update && apt-get install -y wrk",
                file=sys.stderr,
            )
    elif client == "wrk" and not wrk:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")

    quiet_load = None
    if args.wait_quiet > 0:
        quiet_load = wait_quiet(args.wait_quiet)
        print(f"machine load before the run: {quiet_load:.2f} cores", flush=True)
    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    folder = Path(tempfile.mkdtemp(prefix="omnirelay-bench-"))
    if not args.keep:  # also when the run fails half-way
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    data_dir = folder / "data"
    config = write_config(folder, args.synchronous)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    count_file = folder / "transactions"
    if args.worker_process and args.pause_engine:
        raise SystemExit("--pause-engine and --worker-process exclude each other")
    common = ["--config", str(config), "--data-dir", str(data_dir)]
    serve_args = ["api" if args.worker_process else "serve", *common, "--port", str(port)]
    cmd = server_command(args.plain, count_file, serve_args)
    log = folder / "server.log"
    print("server:", " ".join(cmd), flush=True)
    env = dict(os.environ)
    if args.pause_engine:
        if args.plain:
            raise SystemExit("--pause-engine needs the launcher: drop --plain")
        env["BENCH_PAUSE_ENGINE"] = "1"
    if args.switch_interval is not None:
        if args.plain:
            raise SystemExit("--switch-interval needs the launcher: drop --plain")
        env["BENCH_SWITCH_INTERVAL"] = str(args.switch_interval)
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    worker = None
    try:
        wait_healthy(base, [proc], log)
        if args.worker_process:
            worker_cmd = server_command(True, count_file, ["worker", *common])
            print("worker:", " ".join(worker_cmd), flush=True)
            worker_log = folder / "worker.log"
            worker = subprocess.Popen(worker_cmd, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 30
            while b"worker running" not in worker_log.read_bytes():
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"omnirelay worker did not start:\n{worker_log.read_text()}")
                time.sleep(0.05)
        status, answer = http("POST", base + "/omni/1/scenarios", json.dumps(SCENARIO).encode())
        if status != 200:
            raise SystemExit(f"creating the scenario answered {status}: {answer!r}")
        key = json.loads(answer)["key"]
        body = send_body(key, args.destinations)
        status, answer = http("POST", base + "/omni/1/advanced", body, timeout=30)
        if status != 200:
            raise SystemExit(f"a probe send answered {status}: {answer[:500]!r}")
        probe_ok = 1
        time.sleep(0.3)
        txn_before = int(count_file.read_text()) if count_file.exists() else None

        profiler = start_profiler(proc.pid, args.seconds, args.profile, args.profile_gil) if args.profile else None
        busy0 = machine_busy_seconds()
        cpu0, t0, threads0 = cpu_seconds(proc.pid), time.monotonic(), thread_cpu_seconds(proc.pid)
        worker_cpu0 = cpu_seconds(worker.pid) if worker else 0.0
        url = base + "/omni/1/advanced"
        result = run_load(client, wrk, url, body, args, folder)
        cpu1, t1, threads1 = cpu_seconds(proc.pid), time.monotonic(), thread_cpu_seconds(proc.pid)
        worker_cpu = (cpu_seconds(worker.pid) - worker_cpu0) if worker else 0.0
        busy1 = machine_busy_seconds()
        if profiler is not None:
            _, err = profiler.communicate(timeout=args.seconds + 30)
            if profiler.returncode != 0:
                print(f"py-spy failed: {err.decode(errors='replace')}", file=sys.stderr)
        time.sleep(0.5)  # the counter thread publishes five times a second
        txn_after = int(count_file.read_text()) if count_file.exists() else None
    finally:
        for running in (proc, worker):
            if running is not None and running.poll() is None:
                running.send_signal(signal.SIGTERM if args.graceful else signal.SIGKILL)
                running.wait(timeout=30)

    db = data_dir / "omnirelay.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        stored_requests = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        jobs = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        groups = dict(conn.execute("SELECT status_group, COUNT(*) FROM messages GROUP BY 1").fetchall())

    ok = int(result["ok"]) + probe_ok
    duration = result["duration_s"]
    rps = result["ok"] / duration
    expected_rows = ok * args.destinations
    unanswered = stored_requests - ok  # accepted, but wrk stopped before reading the answer
    in_flight_bound = args.connections if client in ("wrk", "openloop") else 0
    durable = rows == stored_requests * args.destinations and 0 <= unanswered <= in_flight_bound
    transactions = (txn_after - txn_before) if txn_after is not None and txn_before is not None else None

    summary = {
        "machine": info,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.accept", *sys.argv[1:]]),
        "client": client,
        "load_generator": load_generator(client, wrk, args),
        "rate": args.rate,
        "service_p50_ms": result.get("service_p50_ms"),
        "service_p99_ms": result.get("service_p99_ms"),
        "generator_lag_p99_ms": result.get("generator_lag_p99_ms"),
        "destinations": args.destinations,
        "connections": args.connections,
        "threads": args.threads if client == "wrk" else 1,
        "machine_load_before": quiet_load,
        "seconds": args.seconds,
        "synchronous": args.synchronous or "FULL (default)",
        "engine": "paused (diagnostic)"
        if args.pause_engine
        else "in an omnirelay worker process"
        if args.worker_process
        else "running",
        "setup": "omnirelay api + omnirelay worker" if args.worker_process else "omnirelay serve",
        "switch_interval": args.switch_interval,
        "requests_per_s": rps,
        "destinations_per_s": rps * args.destinations,
        **{
            k: result[k]
            for k in (
                "requests",
                "ok",
                "non2xx",
                "err_connect",
                "err_read",
                "err_write",
                "err_timeout",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "p999_ms",
                "max_ms",
                "mean_ms",
                "duration_s",
            )
        },
        "answered_2xx_incl_probe": ok,
        "expected_rows": expected_rows,
        "message_rows": rows,
        "request_rows": stored_requests,
        "job_rows": jobs,
        "messages_by_status_group": groups,
        "accepted_unanswered": unanswered,
        "durable": durable,
        "writer_transactions": transactions,
        "server_cpu_s": cpu1 - cpu0,
        "server_cpu_cores": (cpu1 - cpu0) / (t1 - t0),
        "server_main_thread_cores": (threads1.get(proc.pid, 0.0) - threads0.get(proc.pid, 0.0)) / (t1 - t0),
        "server_other_threads_cores": sorted(
            ((threads1[t] - threads0.get(t, 0.0)) / (t1 - t0) for t in threads1 if t != proc.pid), reverse=True
        ),
        "worker_cpu_cores": worker_cpu / (t1 - t0),
        "client_cpu_cores": result["client_cpu_s"] / (t1 - t0),
        "other_processes_cores": max(
            0.0, (busy1 - busy0 - (cpu1 - cpu0) - worker_cpu - result["client_cpu_s"]) / (t1 - t0)
        ),
        "data_dir": str(data_dir) if args.keep else None,
    }
    print()
    print(
        f"destinations/request  {args.destinations}   synchronous {summary['synchronous']}   "
        f"client {client} ({args.connections} connections)   engine {summary['engine']}"
    )
    print(f"load generator        {summary['load_generator']}")
    print(f"requests/s            {rps:,.0f}   (2xx answers {int(result['ok']):,} in {duration:.2f} s)")
    print(f"destinations/s        {rps * args.destinations:,.0f}")
    print(
        f"latency               p50 {result['p50_ms']:.1f} ms   p90 {result['p90_ms']:.1f} ms   "
        f"p99 {result['p99_ms']:.1f} ms   max {result['max_ms']:.1f} ms"
    )
    if client == "openloop":
        print(
            f"                      (from each request's scheduled time; from its actual send: "
            f"p50 {result['service_p50_ms']:.1f} ms, p99 {result['service_p99_ms']:.1f} ms; "
            f"{int(result['scheduled']):,} scheduled at {args.rate:,.0f}/s, most in flight {result['max_outstanding']})"
        )
    print(
        f"non-2xx answers       {int(result['non2xx'])}   socket errors: connect {int(result['err_connect'])}, "
        f"read {int(result['err_read'])}, write {int(result['err_write'])}, timeout {int(result['err_timeout'])}"
    )
    print(
        f"durability            2xx answers x destinations = {expected_rows:,}   rows in messages = {rows:,}   "
        f"(requests rows {stored_requests:,})"
    )
    print(
        f"                      accepted but unanswered when the load stopped: {unanswered} "
        f"(allowed 0..{in_flight_bound}: requests in flight when {client} stopped)   "
        f"-> {'OK' if durable else 'MISMATCH'}"
    )
    pending = groups.get(1, 0)
    print(
        f"engine                {rows - pending:,} of {rows:,} messages already final when the server was killed "
        f"(status groups {groups}; jobs left {jobs:,})"
    )
    if transactions:
        print(
            f"writer transactions   {transactions:,} (accept and engine together; "
            f"{stored_requests / max(transactions, 1):.1f} stored requests per transaction)"
        )
    else:
        print("writer transactions   not counted (--plain)")
    print(
        f"CPU                   server {summary['server_cpu_cores']:.2f} cores   "
        f"(main thread {summary['server_main_thread_cores']:.2f}, other threads "
        f"{', '.join(f'{c:.2f}' for c in summary['server_other_threads_cores'])})   "
        + (f"worker process {summary['worker_cpu_cores']:.2f} cores   " if worker else "")
        + f"load generator {summary['client_cpu_cores']:.2f} cores   (machine has {info['nproc']})"
    )
    print(
        f"other load            {summary['other_processes_cores']:.2f} cores used by other processes during the run "
        "(above ~0.1 the figures are disturbed: rerun on a quiet machine)"
    )
    if args.keep:
        print(f"kept                  {folder}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if durable else 1


if __name__ == "__main__":
    sys.exit(main())
