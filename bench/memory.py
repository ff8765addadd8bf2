#!/usr/bin/env python3
"""Memory under a long run: peak RSS of one ``omnirelay serve`` process (SQLite, sandbox) while ``--messages``
messages (default 1,000,000) pass through it end to end, and whether RSS grows with the count.

What it does:

1. starts ``omnirelay serve`` on a fresh temporary data folder with a WHATSAPP → SMS default scenario;
2. sends the messages as a bulk sender would: ``POST /omni/1/advanced`` requests of ``--per-request``
   destinations (default 1,000), ``--concurrency`` at a time, keeping at most ``--max-outstanding`` messages
   sent but not yet reported (default 50,000: a sender that waits for its reports rather than queueing the
   whole million at once; ``--max-outstanding 0`` sends everything as fast as it is accepted);
3. takes the reports as they come: by default pulled with ``GET /omni/1/reports?limit=1000`` (``--reports
   pull``); with ``--reports push`` each message carries a ``notifyUrl`` and the server POSTs every report to a
   receiver in this process (one POST per report, as the gateway's webhooks do);
4. samples the server's ``/proc/<pid>/status`` (VmRSS, VmHWM, RssAnon, RssFile) every ``--interval`` second,
   and records RSS when 10 %, 50 % and 100 % of the messages have their report;
5. prints (and writes to ``--json``) the peak RSS (the kernel's high-water mark VmHWM), RSS at 10/50/100 %,
   messages/s, and "flat": RSS at 100 % at most 10 % (+10 MB) above RSS at 10 %.

The path is ``--path rejected`` by default (WhatsApp rejects, the message fails over to SMS: two attempts and
a failover per message); ``--path delivered`` delivers on the first step.

With ``--tracemalloc`` the server runs under ``bench/_serve_tracemalloc.py`` (Python's tracemalloc, 25 frames:
several times slower) and the script prints the allocation sites that grew most between 10 % and 100 %, to
find what keeps memory per message.

    python3 -m bench.memory                          # 1,000,000 messages, ~3-5 minutes on 2 cores
    python3 -m bench.memory --messages 50000         # a quick check
    python3 -m bench.memory --messages 200000 --tracemalloc

Load goes to 127.0.0.1 only; the run stops by itself (``--timeout``, default 3,600 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.lib.gateway import HEADERS, SCENARIO, clean_env, config_toml, server_command, wait_healthy
from bench.lib.machine import free_port, machine, memory_mb, wait_quiet

PATHS = {"delivered": "0", "rejected": "7"}  # the last digit of the numbers (default sandbox rules)
GOAL_MB = 300.0


class Sampler(threading.Thread):
    """Reads the server's memory every ``interval`` seconds, with the progress at that moment."""

    def __init__(self, pid: int, interval: float, progress: dict[str, int]) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.interval = interval
        self.progress = progress
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def sample(self) -> dict[str, float]:
        s = memory_mb(self.pid)
        s["t"] = round(time.monotonic() - self.t0, 2)
        s["sent"] = self.progress["sent"]
        s["reported"] = self.progress["reported"]
        return s

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            s = self.sample()
            if "VmRSS" in s:
                self.samples.append(s)


async def drive(
    base: str, args: argparse.Namespace, progress: dict[str, int], marks: dict[str, dict[str, float]], sampler: Sampler
) -> float:
    """Send every message and wait for every report; returns the seconds from the first send to the last report."""
    total = args.messages
    thresholds = {"10%": total * 0.10, "50%": total * 0.50, "100%": total}
    got_all = asyncio.Event()
    receiver_runner = None
    notify_url = None

    def reported(n: int) -> None:
        progress["reported"] += n
        for name, at in thresholds.items():
            if name not in marks and progress["reported"] >= at:
                marks[name] = sampler.sample()
                print(
                    f"  {name:>4} reported ({progress['reported']:,}): RSS {marks[name].get('VmRSS', 0):.1f} MB "
                    f"(anon {marks[name].get('RssAnon', 0):.1f}, file {marks[name].get('RssFile', 0):.1f}), "
                    f"{time.monotonic() - sampler.t0:.0f} s",
                    flush=True,
                )
                if args.tracemalloc_dir and name in ("10%", "100%"):
                    snapshot_request(args.tracemalloc_dir, name)
        if progress["reported"] >= total:
            got_all.set()

    if args.reports == "push":

        async def receive(request: web.Request) -> web.Response:
            await request.read()
            reported(1)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/reports", receive)
        receiver_runner = web.AppRunner(app, access_log=None)
        await receiver_runner.setup()
        port = free_port()
        await web.TCPSite(receiver_runner, "127.0.0.1", port).start()
        notify_url = f"http://127.0.0.1:{port}/reports"

    connector = aiohttp.TCPConnector(limit=args.concurrency + 4)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(headers=HEADERS, connector=connector, timeout=timeout) as session:
        async with session.post(f"{base}/omni/1/scenarios", json=SCENARIO) as r:
            assert r.status == 200, await r.text()
            key = (await r.json())["key"]
        requests = total // args.per_request
        next_request = 0
        room = asyncio.Condition()
        digit = PATHS[args.path]
        started = time.perf_counter()

        async def sender() -> None:
            nonlocal next_request
            while next_request < requests:
                if args.max_outstanding:
                    async with room:
                        await room.wait_for(
                            lambda: progress["sent"] - progress["reported"] + args.per_request <= args.max_outstanding
                        )
                if next_request >= requests:
                    return
                b = next_request
                next_request += 1
                body: dict[str, Any] = {
                    "scenarioKey": key,
                    "bulkId": f"mem-{b}",
                    "destinations": [
                        {"to": {"phoneNumber": f"41{b:07d}{i:03d}{digit}"}} for i in range(args.per_request)
                    ],
                    "whatsApp": {"text": "Hello on WhatsApp"},
                    "sms": {"text": "Hello by SMS"},
                }
                if notify_url:
                    body["notifyUrl"] = notify_url
                progress["sent"] += args.per_request
                async with session.post(f"{base}/omni/1/advanced", json=body) as r:
                    if r.status != 200:
                        raise SystemExit(f"send answered {r.status}: {(await r.text())[:300]}")
                    await r.read()

        async def poller() -> None:
            while not got_all.is_set():
                async with session.get(f"{base}/omni/1/reports?limit=1000") as r:
                    n = len((await r.json())["results"])
                if n:
                    reported(n)
                    async with room:
                        room.notify_all()
                else:
                    await asyncio.sleep(0.05)

        async def pushed() -> None:  # wakes the senders as pushed reports arrive
            while not got_all.is_set():
                await asyncio.sleep(0.05)
                async with room:
                    room.notify_all()

        waker = poller() if args.reports == "pull" else pushed()
        work = asyncio.gather(waker, *(sender() for _ in range(args.concurrency)))
        try:
            await asyncio.wait_for(work, timeout=args.timeout)
        except TimeoutError:
            raise SystemExit(
                f"timed out after {args.timeout:.0f} s: {progress['reported']:,} of {total:,} reported"
            ) from None
        seconds = time.perf_counter() - started
    if receiver_runner is not None:
        await receiver_runner.cleanup()
    return seconds


def snapshot_request(folder: Path, name: str) -> None:
    """Ask the tracemalloc launcher for a snapshot (it watches the folder for ``*.request`` files)."""
    (folder / f"{name.rstrip('%')}.request").write_text(name)


def tracemalloc_report(folder: Path, top: int) -> list[str]:
    """The allocation sites that grew most from the 10 % snapshot to the 100 % one."""
    import tracemalloc

    first, last = folder / "10.snapshot", folder / "100.snapshot"
    deadline = time.monotonic() + 120
    while not (first.exists() and last.exists()) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not (first.exists() and last.exists()):
        return ["tracemalloc snapshots missing"]
    a, b = tracemalloc.Snapshot.load(str(first)), tracemalloc.Snapshot.load(str(last))
    lines = [
        f"tracemalloc: traced {sum(s.size for s in a.statistics('filename')) / 2**20:.1f} MB at 10 %, "
        f"{sum(s.size for s in b.statistics('filename')) / 2**20:.1f} MB at 100 %; growth by line:"
    ]
    for stat in b.compare_to(a, "lineno")[:top]:
        lines.append(f"  {stat.size_diff / 2**20:+8.2f} MB {stat.count_diff:+9,} blocks  {stat.traceback[0]}")
    lines.append("growth by traceback (top 5):")
    for stat in b.compare_to(a, "traceback")[:5]:
        lines.append(f"  {stat.size_diff / 2**20:+8.2f} MB {stat.count_diff:+9,} blocks")
        lines += [f"      {frame}" for frame in stat.traceback.format()[-16:]]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=1_000_000, help="messages to pass through (default 1,000,000)")
    p.add_argument("--per-request", type=int, default=1000, help="destinations per request (default 1,000)")
    p.add_argument("--concurrency", type=int, default=2, help="requests in flight at once (default 2)")
    p.add_argument(
        "--max-outstanding",
        type=int,
        default=50_000,
        help="most messages sent but not yet reported (default 50,000; 0: no limit)",
    )
    p.add_argument("--path", choices=list(PATHS), default="rejected", help="sandbox path (default rejected)")
    p.add_argument("--reports", choices=["pull", "push"], default="pull", help="how reports are taken")
    p.add_argument("--interval", type=float, default=1.0, help="RSS sampling interval in seconds (default 1)")
    p.add_argument("--tracemalloc", action="store_true", help="run the server under tracemalloc (slow)")
    p.add_argument(
        "--launcher",
        type=Path,
        default=None,
        help="diagnostic: run the server as `python LAUNCHER serve ...` (a script that patches something, then "
        "calls omnirelay.cli.main) to test a hypothesis about what grows",
    )
    p.add_argument("--top", type=int, default=25, help="with --tracemalloc: lines to print (default 25)")
    p.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds (default 3,600)")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS", help="wait for an idle machine")
    p.add_argument("--samples", type=Path, default=None, help="write every RSS sample to this JSON file")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (database, server log)")
    args = p.parse_args(argv)
    if args.messages % args.per_request:
        p.error("--messages must be a multiple of --per-request")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_load = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
    folder = Path(tempfile.mkdtemp(prefix="omnirelay-memory-"))
    data_dir = folder / "data"
    config = folder / "omnirelay.toml"
    config.write_text(config_toml())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # one process, as the goal says: `serve` on SQLite is otherwise a supervisor with the API and the engine as
    # two child processes, and this samples the one pid it started
    serve_args = ["serve", "--single-process", "--config", str(config), "--data-dir", str(data_dir)]
    serve_args += ["--port", str(port)]
    args.tracemalloc_dir = None
    if args.tracemalloc:
        args.tracemalloc_dir = folder / "tracemalloc"
        args.tracemalloc_dir.mkdir()
        cmd = [sys.executable, "-m", "bench._serve_tracemalloc", str(args.tracemalloc_dir), *serve_args]
    elif args.launcher:
        cmd = [sys.executable, str(args.launcher), *serve_args]
    else:
        cmd = server_command(True, folder / "unused", serve_args)
    log = folder / "server.log"
    env = clean_env()
    print("server:", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    progress = {"sent": 0, "reported": 0}
    marks: dict[str, dict[str, float]] = {}
    try:
        wait_healthy(base, [proc], log)
        time.sleep(0.5)
        sampler = Sampler(proc.pid, args.interval, progress)
        start = sampler.sample()
        sampler.start()
        print(
            f"sending {args.messages:,} messages ({args.per_request:,} per request, path {args.path}, "
            f"reports {args.reports}, at most {args.max_outstanding or 'any number of'} outstanding); "
            f"RSS at start {start.get('VmRSS', 0):.1f} MB",
            flush=True,
        )
        seconds = asyncio.run(drive(base, args, progress, marks, sampler))
        time.sleep(args.interval)
        end = sampler.sample()
        sampler.stop.set()
        sampler.join()
        traced = tracemalloc_report(args.tracemalloc_dir, args.top) if args.tracemalloc_dir else []
        db_bytes = sum(p.stat().st_size for p in data_dir.glob("omnirelay.db*"))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    samples = sampler.samples
    peak = max([end.get("VmHWM", 0.0)] + [s.get("VmHWM", 0.0) for s in samples])
    rss = {name: marks[name].get("VmRSS", 0.0) for name in ("10%", "50%", "100%") if name in marks}
    growth = rss["100%"] - rss["10%"]
    flat = rss["100%"] <= rss["10%"] * 1.10 + 10
    result: dict[str, Any] = {
        "machine": machine(),
        "machine_load_before": quiet_load,
        "setup": "SQLite, one omnirelay serve --single-process, sandbox channels",
        "load_generator": (
            f"aiohttp client in bench/memory.py: requests of {args.per_request:,} destinations, {args.concurrency} "
            f"at a time, at most {args.max_outstanding or 'unlimited'} messages outstanding; reports "
            + ("pulled with GET /omni/1/reports?limit=1000" if args.reports == "pull" else "pushed to notifyUrl")
        ),
        "path": args.path,
        "reports": args.reports,
        "messages": args.messages,
        "seconds": round(seconds, 1),
        "messages_per_second": round(args.messages / seconds),
        "rss_start_mb": round(start.get("VmRSS", 0.0), 1),
        "rss_10pct_mb": round(rss["10%"], 1),
        "rss_50pct_mb": round(rss.get("50%", 0.0), 1),
        "rss_100pct_mb": round(rss["100%"], 1),
        "rss_end_mb": round(end.get("VmRSS", 0.0), 1),
        "anon_10pct_mb": round(marks["10%"].get("RssAnon", 0.0), 1),
        "anon_100pct_mb": round(marks["100%"].get("RssAnon", 0.0), 1),
        "file_100pct_mb": round(marks["100%"].get("RssFile", 0.0), 1),
        "peak_rss_mb": round(peak, 1),
        "max_sampled_rss_mb": round(max(s.get("VmRSS", 0.0) for s in samples), 1) if samples else None,
        "growth_10_to_100pct_mb": round(growth, 1),
        "flat": flat,
        "goal_peak_mb": GOAL_MB,
        "goal_met": peak < GOAL_MB and flat,
        "database_bytes": db_bytes,
        "samples": len(samples),
        "tracemalloc": traced or None,
    }
    print()
    print(f"messages              {args.messages:,} in {seconds:.1f} s ({args.messages / seconds:,.0f}/s end to end)")
    print(
        f"RSS                   start {result['rss_start_mb']} MB   10 % {result['rss_10pct_mb']} MB   "
        f"50 % {result['rss_50pct_mb']} MB   100 % {result['rss_100pct_mb']} MB   end {result['rss_end_mb']} MB"
    )
    print(
        f"                      (anonymous {result['anon_10pct_mb']} -> {result['anon_100pct_mb']} MB; "
        f"file-backed at 100 % {result['file_100pct_mb']} MB)"
    )
    print(
        f"peak RSS (VmHWM)      {result['peak_rss_mb']} MB   goal < {GOAL_MB:.0f} MB   growth 10 % -> 100 %: "
        f"{growth:+.1f} MB -> {'flat' if flat else 'GROWING'}"
    )
    print(f"database              {db_bytes / 2**20:,.0f} MB on disk")
    for line in traced:
        print(line)
    if args.samples:
        args.samples.write_text(json.dumps(samples) + "\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
