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

    python bench/openloop.py --url http://127.0.0.1:8080/omni/1/advanced --body-file body.json \\
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
import sys
import time
from pathlib import Path
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
    url: str, body: bytes, headers: dict[str, str], rate: float, seconds: float, connections: int, drain: float
) -> dict[str, float]:
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
    t0 = clock() + 0.05
    i = 0
    while i < total:
        due_now = min(total, int((clock() - t0) * rate) + 1)
        while i < due_now:
            outstanding += 1
            max_outstanding = max(max_outstanding, outstanding)
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
    latencies.sort()
    service.sort()
    answered = counts["ok"] + counts["non2xx"]
    return {
        "rate": rate,
        "scheduled": total,
        "requests": answered,
        "ok": counts["ok"],
        "non2xx": counts["non2xx"],
        "duration_s": max(seconds, last_done - t0),
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
    result = asyncio.run(
        run(args.url, args.body_file.read_bytes(), headers, args.rate, args.seconds, args.connections, args.drain)
    )
    print("BENCH-JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
