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

    python bench/accept.py --destinations 1 --seconds 15 --connections 64
    python bench/accept.py --destinations 1000 --seconds 15 --connections 16
    python bench/accept.py --destinations 1 --synchronous NORMAL
    python bench/accept.py --destinations 1 --rate 1700 --seconds 15   # open loop at 1,700 requests/s
    python bench/accept.py --destinations 1 --profile /tmp/profile.txt   # py-spy during the load

Load traffic goes to 127.0.0.1 only, and every run stops by itself after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
API_KEY = "bench-key"
HEADERS = {"Authorization": f"App {API_KEY}", "Content-Type": "application/json"}
SCENARIO = {
    "name": "b",
    "flow": [{"from": "WA", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}],
    "default": True,
}


# --- machine and server ----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """nproc, CPU model, memory, kernel and Python: what a figure was measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "nproc": str(os.cpu_count()),
        "usable_cpus": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, synchronous: str | None) -> Path:
    lines = []
    if synchronous:
        lines.append(f'sqlite_synchronous = "{synchronous}"')
    lines += [
        'log_level = "WARNING"',
        "",
        "[[accounts]]",
        'username = "bench"',
        'password = "bench"',
        f'api_keys = ["{API_KEY}"]',
        "",
    ]
    path = folder / "omnirelay.toml"
    path.write_text("\n".join(lines))
    return path


def server_command(plain: bool, count_file: Path, args: list[str]) -> list[str]:
    """The console script ``omnirelay`` when ``plain``; else the same ``omnirelay.cli.main`` through a
    launcher that also publishes the writer's transaction count (see ``bench/_serve_counting.py``)."""
    if plain:
        exe = shutil.which("omnirelay")
        if exe:
            return [exe, *args]
        return [sys.executable, "-c", "import sys; from omnirelay.cli import main; sys.exit(main())", *args]
    return [sys.executable, str(HERE / "_serve_counting.py"), str(count_file), *args]


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=HEADERS)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"omnirelay serve exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            if http("GET", base + "/health", timeout=1.0)[0] == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"omnirelay serve did not answer /health within {timeout:.0f} s:\n{log.read_text()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all its threads) and of its live child processes (``omnirelay
    serve`` on SQLite is a supervisor of two), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = [cpu_seconds(child) for child in _child_pids(pid)]
    return own + sum(c for c in children if c == c)  # one that ended meanwhile is nan


def _child_pids(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all processors spent busy (not idle, not waiting for I/O) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit_s: float, threshold: float = 0.2, window: float = 2.0) -> float:
    """Wait (at most ``limit_s``) for a ``window`` in which the machine is busy below ``threshold`` cores;
    returns the last measured load. A shared machine otherwise skews every figure."""
    deadline = time.monotonic() + limit_s
    while True:
        b0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(window)
        load = (machine_busy_seconds() - b0) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return load
        print(f"machine busy ({load:.2f} cores): waiting for it to calm down", file=sys.stderr, flush=True)


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU of each thread of a live process, by thread id (the main thread's id is the pid)."""
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def send_body(scenario_key: str, destinations: int) -> bytes:
    dests = [{"to": {"phoneNumber": str(41793000000 + i)}} for i in range(destinations)]
    if destinations == 1:
        dests = [{"to": {"phoneNumber": "41793026727"}}]
    body = {"scenarioKey": scenario_key, "destinations": dests, "whatsApp": {"text": "hi"}, "sms": {"text": "hello"}}
    return json.dumps(body, separators=(",", ":")).encode()


# --- load generators ---------------------------------------------------------------------------------

LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "App %(key)s"
wrk.body = [==[%(body)s]==]

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; non2xx = 0 end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local ok_total, bad_total = 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    bad_total = bad_total + t:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%%d,"ok":%%d,"non2xx":%%d,"duration_s":%%.6f,"err_connect":%%d,"err_read":%%d,' ..
    '"err_write":%%d,"err_timeout":%%d,"p50_ms":%%.3f,"p90_ms":%%.3f,"p99_ms":%%.3f,"p999_ms":%%.3f,' ..
    '"max_ms":%%.3f,"mean_ms":%%.3f}\n',
    summary.requests, ok_total, bad_total, summary.duration / 1e6, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency:percentile(99.9) / 1e3, latency.max / 1e3, latency.mean / 1e3))
end
"""


def run_wrk(wrk: str, url: str, body: bytes, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    script = folder / "advanced.lua"
    script.write_text(LUA % {"key": API_KEY, "body": body.decode()})
    cmd = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.seconds}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    print("load:", " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    result: dict[str, float] = json.loads(line[len("BENCH-JSON ") :])
    result["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if args.verbose:
        print(out.stdout)
    return result


def wrk_version(wrk: str | None) -> str:
    """``wrk debian/4.1.0-3+b2`` or so: the load generator's name and version, for the record."""
    if wrk is None:
        return "wrk (not installed)"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
        words = (out.stdout + out.stderr).split()
        if len(words) >= 2:
            return f"{words[0]} {words[1]}"
    return "wrk"


def run_openloop(url: str, body: bytes, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    """Constant-rate open-loop load at ``args.rate`` requests/s by ``bench/openloop.py``, in a process of its own
    (so its CPU is measured apart, as wrk's is)."""
    body_file = folder / "openloop-body.json"
    body_file.write_bytes(body)
    cmd = [
        sys.executable,
        str(HERE / "openloop.py"),
        "--url",
        url,
        "--body-file",
        str(body_file),
        "--header",
        f"Authorization: App {API_KEY}",
        "--rate",
        f"{args.rate:g}",
        "--seconds",
        str(args.seconds),
        "--connections",
        str(args.connections),
        "--processes",
        str(getattr(args, "load_processes", 1)),
    ]
    print("load:", " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"openloop failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    result: dict[str, float] = json.loads(line[len("BENCH-JSON ") :])
    result["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def load_generator(client: str, wrk: str | None, args: argparse.Namespace) -> str:
    """Which load generator produced a figure, in words."""
    if client == "wrk":
        return f"{wrk_version(wrk)}, {args.threads} threads, {args.connections} connections (closed loop)"
    if client == "openloop":
        n = getattr(args, "load_processes", 1)
        return (
            f"bench/openloop.py, open loop at a constant {args.rate:,.0f} requests/s, at most {args.connections} "
            f"connections{f', {n} processes' if n > 1 else ''}; latency from each request's scheduled time"
        )
    return f"aiohttp client in the benchmark process, {args.connections} connections (closed loop)"


def run_load(client: str, wrk: str | None, url: str, body: bytes, args: argparse.Namespace, folder: Path) -> dict:
    """Drive the load with ``client`` (wrk, openloop or aiohttp); returns the summary dict of that generator."""
    if client == "wrk":
        assert wrk is not None
        return run_wrk(wrk, url, body, args, folder)
    if client == "openloop":
        return run_openloop(url, body, args, folder)
    return run_aiohttp(url, body, args)


async def _aiohttp_load(url: str, body: bytes, connections: int, seconds: float) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    counts: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    start = time.perf_counter()
    deadline = start + seconds
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=HEADERS) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body) as resp:
                        await resp.read()
                        counts["ok" if 200 <= resp.status < 300 else "non2xx"] += 1
                except (TimeoutError, aiohttp.ClientError):
                    counts["err_read"] += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(connections)))
    duration = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e3 if latencies else 0.0

    return {
        "requests": counts["ok"] + counts["non2xx"],
        "ok": counts["ok"],
        "non2xx": counts["non2xx"],
        "duration_s": duration,
        "err_connect": 0,
        "err_read": counts["err_read"],
        "err_write": 0,
        "err_timeout": 0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": latencies[-1] * 1e3 if latencies else 0.0,
        "mean_ms": sum(latencies) / len(latencies) * 1e3 if latencies else 0.0,
    }


def run_aiohttp(url: str, body: bytes, args: argparse.Namespace) -> dict[str, float]:
    print(
        f"load: in-process aiohttp client, {args.connections} connections, {args.seconds} s "
        "(the Python client is itself CPU-bound: figures are a lower bound)",
        flush=True,
    )
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(_aiohttp_load(url, body, args.connections, args.seconds))
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


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
        wait_healthy(base, proc, log)
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
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
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
