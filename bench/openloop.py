#!/usr/bin/env python3
"""Open-loop, constant-rate HTTP load: request ``i`` is due at ``t0 + i / rate`` whatever the server does.

wrk (Debian's 4.1.0) only drives a closed loop: each connection sends its next request when the previous
answer arrives, so a slow server is sent less and its latency looks better than a client would see it
("coordinated omission"). This generator keeps the schedule instead and measures each request's latency
**from the time it was due**, not from when it could be sent: a request waiting for a free connection (or
for the event loop) counts that wait. Concurrency is bounded by ``--connections`` keep-alive connections;
requests due while all are busy queue for the next free one (and their wait is counted).

The client is deliberately lean (asyncio streams on uvloop, one pre-built request, a minimal HTTP/1.1
response reader) so that it costs the server's two cores as little as possible; its CPU is reported by the
caller (``bench/accept.py --rate``).

Used by ``bench/accept.py --rate R`` and ``bench/accept_pg.py --rate R``; alone::

    python3 -m bench.openloop --url http://127.0.0.1:8080/omni/1/advanced --body-file body.json \\
        --header "Authorization: App bench-key" --rate 1500 --seconds 15 --connections 64

It prints one line ``BENCH-JSON {...}`` with the same keys as the wrk summary of ``bench/accept.py``
(requests, ok, non2xx, duration_s, err_*, p50_ms ... max_ms, mean_ms) plus ``rate``, ``scheduled``,
``service_p50_ms`` / ``service_p99_ms`` (from the actual send, for comparison) and ``max_outstanding``.
Load goes to the given URL only (use a loopback address) and stops after ``--seconds`` plus at most
``--drain`` seconds for the last answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class _Conn:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send ``request``, read the whole answer; returns (status, keep the connection)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        chunked = False
        keep = True
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                keep = False
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await self.reader.readexactly(length)
        else:  # no length: the body runs to the end of the connection
            await self.reader.read()
            keep = False
        return status, keep

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1e3


async def run(
    url: str,
    body: bytes,
    headers: dict[str, str],
    rate: float,
    seconds: float,
    connections: int,
    drain: float,
    start_at: float | None = None,
    offset: float = 0.0,
) -> dict[str, Any]:
    """The load; ``start_at`` (a ``time.time()``) and ``offset`` (seconds) let several processes share one
    schedule: process k of n runs at rate/n, offset k/rate."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = [f"POST {target} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body

    clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution
    pool: asyncio.Queue[_Conn | None] = asyncio.Queue()
    for _ in range(connections):  # connections are opened lazily, on first use
        pool.put_nowait(None)
    latencies: list[float] = []
    service: list[float] = []
    lags: list[float] = []  # how late the generator itself started each request: it must keep its schedule
    counts = {"ok": 0, "non2xx": 0, "err_connect": 0, "err_read": 0}
    outstanding = 0
    max_outstanding = 0
    last_done = 0.0

    async def fire(due: float) -> None:
        nonlocal outstanding, last_done
        conn = await pool.get()
        try:
            if conn is None:
                try:
                    conn = _Conn(*await asyncio.open_connection(host, port))
                except OSError:
                    counts["err_connect"] += 1
                    return
            sent = clock()
            try:
                status, keep = await conn.exchange(request)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
                counts["err_read"] += 1
                conn.close()
                conn = None
                return
            now = clock()
            last_done = now
            latencies.append(now - due)
            service.append(now - sent)
            counts["ok" if 200 <= status < 300 else "non2xx"] += 1
            if not keep:
                conn.close()
                conn = None
        finally:
            outstanding -= 1
            pool.put_nowait(conn)

    total = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()
    t0 = clock() + 0.05 if start_at is None else clock() + max(0.0, start_at - time.time())
    t0 += offset
    i = 0
    while i < total:
        due_now = min(total, int((clock() - t0) * rate) + 1)
        while i < due_now:
            outstanding += 1
            max_outstanding = max(max_outstanding, outstanding)
            lags.append(clock() - (t0 + i / rate))
            task = asyncio.create_task(fire(t0 + i / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - clock()))
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain)
        for task in pending:
            task.cancel()
        unanswered = len(pending)
    else:
        unanswered = 0
    while not pool.empty():
        conn = pool.get_nowait()
        if conn is not None:
            conn.close()
    return {"counts": counts, "latencies": latencies, "service": service, "lags": lags, "total": total,
            "unanswered": unanswered, "t0": t0, "last_done": last_done, "max_outstanding": max_outstanding}


def summary(parts: list[dict[str, Any]], rate: float, seconds: float) -> dict[str, float]:
    """One summary of the runs of one or more generator processes (percentiles over all their requests)."""
    latencies = sorted(x for p in parts for x in p["latencies"])
    service = sorted(x for p in parts for x in p["service"])
    lags = sorted(x for p in parts for x in p["lags"])
    counts = {k: sum(p["counts"][k] for p in parts) for k in parts[0]["counts"]}
    total = sum(p["total"] for p in parts)
    unanswered = sum(p["unanswered"] for p in parts)
    span = max(p["last_done"] - p["t0"] for p in parts)
    max_outstanding = sum(p["max_outstanding"] for p in parts)
    answered = counts["ok"] + counts["non2xx"]
    return {
        "rate": rate,
        "scheduled": total,
        "requests": answered,
        "ok": counts["ok"],
        "non2xx": counts["non2xx"],
        "duration_s": max(seconds, span),
        "err_connect": counts["err_connect"],
        "err_read": counts["err_read"],
        "err_write": 0,
        "err_timeout": unanswered,
        "p50_ms": _percentile(latencies, 50),
        "p90_ms": _percentile(latencies, 90),
        "p99_ms": _percentile(latencies, 99),
        "p999_ms": _percentile(latencies, 99.9),
        "max_ms": latencies[-1] * 1e3 if latencies else 0.0,
        "mean_ms": sum(latencies) / len(latencies) * 1e3 if latencies else 0.0,
        "service_p50_ms": _percentile(service, 50),
        "service_p99_ms": _percentile(service, 99),
        "max_outstanding": max_outstanding,
        "generator_lag_p99_ms": _percentile(lags, 99),
        "generator_lag_max_ms": lags[-1] * 1e3 if lags else 0.0,
        "generator_processes": len(parts),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="http://HOST:PORT/PATH (POST)")
    p.add_argument("--body-file", type=Path, required=True, help="the request body (sent on every request)")
    p.add_argument("--header", action="append", default=[], help='"Name: value" (repeatable)')
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--connections", type=int, default=64, help="most requests in flight at once (default 64)")
    p.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the last answers (default 30)")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="generator processes sharing the schedule (each rate/N, connections/N): one Python process keeps "
        "a schedule up to a few thousand requests/s; past that it falls behind (see generator_lag_p99_ms)",
    )
    p.add_argument("--part", nargs=4, metavar=("INDEX", "OF", "START_AT", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.url.startswith("http://"):
        raise SystemExit("only plain http:// URLs")
    headers = {"Content-Type": "application/json"}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    body = args.body_file.read_bytes()
    if args.part:  # one of --processes N: run our share, leave the raw figures for the parent
        index, of, start_at, out = int(args.part[0]), int(args.part[1]), float(args.part[2]), Path(args.part[3])
        share = asyncio.run(
            run(args.url, body, headers, args.rate / of, args.seconds, max(1, args.connections // of), args.drain,
                start_at, index / args.rate)
        )
        out.write_text(json.dumps(share))
        return 0
    if args.processes <= 1:
        parts = [asyncio.run(run(args.url, body, headers, args.rate, args.seconds, args.connections, args.drain))]
    else:
        parts = _in_processes(argv if argv is not None else sys.argv[1:], args.processes)
    print("BENCH-JSON " + json.dumps(summary(parts, args.rate, args.seconds)), flush=True)
    return 0


def _in_processes(argv: list[str], n: int) -> list[dict[str, Any]]:
    """Run the same load as ``n`` processes sharing one schedule; their raw figures."""
    start_at = time.time() + 1.0  # every process is up by then
    with tempfile.TemporaryDirectory() as folder:
        outs = [Path(folder) / f"part{k}.json" for k in range(n)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.openloop", *argv, "--part", str(k), str(n), repr(start_at), str(out)]
            )
            for k, out in enumerate(outs)
        ]
        for proc in procs:
            if proc.wait() != 0:
                raise SystemExit(f"a generator process exited {proc.returncode}")
        return [json.loads(out.read_text()) for out in outs]


if __name__ == "__main__":
    sys.exit(main())
