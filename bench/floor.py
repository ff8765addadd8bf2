#!/usr/bin/env python3
"""The floor: the least a durable accept can cost on this machine, measured beside omnirelay in the same run.

A minimal server with the same stack and the same promise as omnirelay's accept path, and nothing else:
aiohttp + msgspec, one validated JSON body (``POST /omni/1/advanced`` with the benchmark's body), its rows
written with group commit (every request waiting while a commit runs shares the next one), answered 200 only
after the commit. No authentication, no scenarios, no engine, no rate limits: what omnirelay does on top of
this is what a ratio to the floor shows.

    python3 -m bench.floor --store sqlite --seconds 15             # SQLite WAL, synchronous=FULL
    python3 -m bench.floor --store postgres --seconds 15           # asyncpg, COPY in one transaction
    python3 -m bench.floor --store sqlite --rate 4000              # open loop, for latency at a given rate

The load comes from the same generators as ``bench/accept.py`` (``bench/lib/load.py``: wrk, else aiohttp;
``--rate`` open loop). After the load the server is killed with SIGKILL and every 2xx answer is looked for in
the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from bench.lib import pg
from bench.lib.gateway import wait_healthy
from bench.lib.load import load_generator, run_load, send_body
from bench.lib.machine import cpu_seconds, free_port, machine, wait_quiet

# --- the floor server ------------------------------------------------------------------------------------


class To(msgspec.Struct):
    phoneNumber: str


class Destination(msgspec.Struct):
    to: To
    messageId: str | None = None


class Request(msgspec.Struct):
    destinations: list[Destination]
    scenarioKey: str | None = None
    whatsApp: dict[str, str] | None = None
    sms: dict[str, str] | None = None


Row = tuple[str, str, str, bytes]
"""(message id, request id, destination, the request body)."""


class Ids:
    """Time-ordered ids (a millisecond clock and a counter), as cheap as the floor allows."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"{time.time_ns() // 1_000_000:012x}-{os.getpid():06x}-{self.n:010x}"


class SqliteWriter:
    """Group commit on SQLite: one thread writes everything queued since its last commit in one transaction."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, body BLOB NOT NULL)")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, request_id TEXT NOT NULL, dest TEXT NOT NULL)"
        )
        self.queue: list[tuple[list[Row], asyncio.Future[None]]] = []
        self.ready = threading.Condition()
        self.loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, daemon=True).start()

    async def write(self, rows: list[Row]) -> None:
        done: asyncio.Future[None] = self.loop.create_future()
        with self.ready:
            self.queue.append((rows, done))
            self.ready.notify()
        await done

    def _run(self) -> None:
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait()
                batch, self.queue = self.queue, []
            self.conn.execute("BEGIN")
            for rows, _ in batch:
                self.conn.execute("INSERT INTO requests VALUES (?, ?)", (rows[0][1], rows[0][3]))
                self.conn.executemany("INSERT INTO messages VALUES (?, ?, ?)", [r[:3] for r in rows])
            self.conn.execute("COMMIT")
            for _, done in batch:
                self.loop.call_soon_threadsafe(_resolve, done)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class PostgresWriter:
    """Group commit on PostgreSQL: while one COPY transaction runs, the next batch gathers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.queue: list[tuple[list[Row], asyncio.Future[None]]] = []
        self.wake = asyncio.Event()

    async def start(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(self.url, min_size=2, max_size=4)
        async with self.pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, body BYTEA NOT NULL);"
                "CREATE TABLE IF NOT EXISTS messages"
                " (id TEXT PRIMARY KEY, request_id TEXT NOT NULL, dest TEXT NOT NULL)"
            )
        asyncio.get_running_loop().create_task(self._run())

    async def write(self, rows: list[Row]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append((rows, done))
        self.wake.set()
        await done

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.queue = self.queue, []
            if not batch:
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("requests", records=[(r[0][1], r[0][3]) for r, _ in batch])
                await conn.copy_records_to_table("messages", records=[row[:3] for r, _ in batch for row in r])
            for _, done in batch:
                _resolve(done)
            if self.queue:
                self.wake.set()


def serve(store: str, where: str, port: int) -> None:
    """Run the floor server until killed."""
    from aiohttp import web

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    decoder = msgspec.json.Decoder(Request)
    encoder = msgspec.json.Encoder()
    ids = Ids()

    async def advanced(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            req = decoder.decode(body)
        except msgspec.ValidationError as exc:
            return web.Response(status=400, body=encoder.encode({"error": str(exc)}))
        if not req.destinations:
            return web.Response(status=400, body=b'{"error":"destinations: empty"}')
        bulk = ids.next()
        rows = [(d.messageId or ids.next(), bulk, d.to.phoneNumber, body) for d in req.destinations]
        await request.app["writer"].write(rows)
        answer = {"bulkId": bulk, "messages": [{"messageId": r[0], "to": {"phoneNumber": r[2]}} for r in rows]}
        return web.Response(body=encoder.encode(answer), content_type="application/json")

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(app: web.Application) -> None:
        if store == "sqlite":
            app["writer"] = SqliteWriter(where)
        else:
            writer = PostgresWriter(where)
            await writer.start()
            app["writer"] = writer

    app = web.Application()
    app.router.add_post("/omni/1/advanced", advanced)
    app.router.add_get("/health", health)
    app.on_startup.append(start)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- the benchmark -------------------------------------------------------------------------------------


def count(store: str, where: str) -> tuple[int, int]:
    """(messages, requests) stored."""
    if store == "sqlite":
        with contextlib.closing(sqlite3.connect(where)) as conn:
            return (
                conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0],
            )

    async def pg() -> tuple[int, int]:
        import asyncpg

        conn = await asyncpg.connect(where)
        try:
            return (
                int(await conn.fetchval("SELECT count(*) FROM messages")),
                int(await conn.fetchval("SELECT count(*) FROM requests")),
            )
        finally:
            await conn.close()

    return asyncio.run(pg())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres", help="PostgreSQL server")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--destinations", type=int, default=1)
    p.add_argument("--client", choices=["auto", "wrk", "aiohttp"], default="auto")
    p.add_argument("--rate", type=float, default=None, help="open loop at this many requests/s")
    p.add_argument("--load-processes", type=int, default=1, help="with --rate: generator processes")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--verbose", action="store_true", help="print wrk's own output too")
    p.add_argument("--serve", nargs=2, metavar=("WHERE", "PORT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.store, args.serve[0], int(args.serve[1]))
        return 0
    wrk = shutil.which("wrk")
    client = "openloop" if args.rate is not None else args.client
    if client == "auto":
        client = "wrk" if wrk else "aiohttp"
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
    folder = Path(tempfile.mkdtemp(prefix="omnirelay-floor-"))
    database = asyncio.run(pg.fresh_database(args.database)) if args.store == "postgres" else None
    where = database or str(folder / "floor.db")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    cmd = [sys.executable, "-m", "bench.floor", "--store", args.store, "--serve", where, str(port)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(base, [proc], log)
        body = send_body("floor", args.destinations)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        result = run_load(client, wrk, base + "/omni/1/advanced", body, args, folder)
        server_cores = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    try:
        rows, requests = count(args.store, where)
    finally:
        if database:
            asyncio.run(pg.drop_database(args.database, database))
        shutil.rmtree(folder, ignore_errors=True)
    ok = int(result["ok"])
    in_flight = args.connections if client in ("wrk", "openloop") else 0
    durable = rows == requests * args.destinations and 0 <= requests - ok <= in_flight
    rps = ok / result["duration_s"]
    summary = {
        "machine": machine(),
        "setup": f"floor ({'SQLite WAL, synchronous=FULL' if args.store == 'sqlite' else 'PostgreSQL, asyncpg COPY'})",
        "store": args.store,
        "client": client,
        "load_generator": load_generator(client, wrk, args),
        "destinations": args.destinations,
        "requests_per_s": rps,
        "destinations_per_s": rps * args.destinations,
        **{k: result[k] for k in ("ok", "non2xx", "p50_ms", "p99_ms", "p999_ms", "duration_s", "generator_lag_p99_ms")
           if k in result},
        "server_cpu_cores": server_cores,
        "message_rows": rows,
        "request_rows": requests,
        "durable": durable,
    }
    print(
        f"floor on {args.store}: {rps:,.0f} requests/s, {rps * args.destinations:,.0f} destinations/s, "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, server {server_cores:.2f} cores, "
        f"durable {'OK' if durable else 'MISMATCH'} ({rows:,} rows for {ok:,} answers)"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if durable else 1


if __name__ == "__main__":
    sys.exit(main())
