"""The accept path's load generators: wrk (closed loop), ``bench/openloop.py`` (open loop at a constant rate, in
a process of its own) and an aiohttp client in this process, all summarised with the same keys (requests, ok,
non2xx, duration_s, err_*, p50_ms ... max_ms, mean_ms, client_cpu_s)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.lib.gateway import API_KEY, HEADERS


def send_body(scenario_key: str, destinations: int) -> bytes:
    """The body every request of a load posts: ``destinations`` numbers, WhatsApp and SMS content."""
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
    """wrk for ``args.seconds`` with ``args.threads`` threads and ``args.connections`` connections."""
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
        "-m",
        "bench.openloop",
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
    """The aiohttp client in this process (when wrk is missing): a lower bound, since it is CPU-bound itself."""
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
