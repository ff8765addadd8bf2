#!/usr/bin/env python3
"""PostgreSQL failover under load: how long from the primary's death to the first accepted request, and whether
anything acknowledged was lost or any step submitted twice.

Makes a primary and a synchronous streaming standby on this machine (``bench/lib/pg.py``: Debian's
``pg_createcluster``, ``pg_basebackup``), starts ``omnirelay serve`` on the libpq multi-host URL of both
(``target_session_attrs=read-write``), sends single-destination messages from ``--connections`` senders, kills
the primary (``pg_ctlcluster stop -m immediate``) once ``--before`` messages were accepted, promotes the standby
``--promote-after`` seconds later (0: at once, as failover automation that is told of the death would), and goes
on for ``--after`` seconds once requests are accepted again. Then it compares every 200 with the rows on the new
primary, counts steps submitted twice, and drops both clusters.

    python3 -m bench.pg_failover
    python3 -m bench.pg_failover --promote-after 5 --json /tmp/failover.json
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
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.lib.gateway import HEADERS, SCENARIO, clean_env, http, omnirelay, wait_healthy, write_config
from bench.lib.machine import free_port, machine
from bench.lib.pg import Pair

DATABASE = "omnirelay_failover"


async def drive(base: str, pair: Pair, args: argparse.Namespace) -> dict[str, Any]:
    """The load, the primary's death and the promotion; what was answered, and when."""
    accepted: list[str] = []
    answers: Counter[int] = Counter()
    died_at: list[float] = []
    back_at: list[float] = []

    async def sender(session: aiohttp.ClientSession, w: int) -> None:
        n = 0
        while not (back_at and time.monotonic() - back_at[0] > args.after):
            n += 1
            message_id = f"f-{w}-{n}"
            body = {"destinations": [{"messageId": message_id, "to": {"phoneNumber": "41793026726"}}],
                    "sms": {"text": "hi"}}
            after_death = bool(died_at)
            try:
                async with session.post(base + "/omni/1/advanced", json=body) as r:
                    await r.read()
                    status = r.status
            except aiohttp.ClientError:
                status = 0
            answers[status] += 1
            if status == 200:
                accepted.append(message_id)
                if after_death and not back_at:
                    back_at.append(time.monotonic())
            elif status:
                await asyncio.sleep(0.02)

    async def chaos() -> None:
        while len(accepted) < args.before:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(pair.kill_primary)
        died_at.append(time.monotonic())
        await asyncio.sleep(args.promote_after)
        await asyncio.to_thread(pair.promote_standby)

    async with aiohttp.ClientSession(headers=HEADERS) as session:
        await asyncio.wait_for(
            asyncio.gather(chaos(), *(sender(session, w) for w in range(args.connections))), timeout=args.timeout
        )
    return {"accepted": accepted, "answers": answers, "died_at": died_at[0], "back_at": back_at[0]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--before", type=int, default=2000, help="accepted messages before the primary dies")
    p.add_argument("--promote-after", type=float, default=0.0, help="seconds from the death to the promotion")
    p.add_argument("--after", type=float, default=5.0, help="seconds of load once requests are accepted again")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="omnirelay-failover-"))
    config = write_config(folder, None)
    pair = Pair()
    proc = None
    try:
        pair.create()
        pair.create_database(DATABASE)
        where = ["--config", str(config), "--database", pair.dsn(DATABASE)]
        subprocess.run([*omnirelay(), "migrate", *where], check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = folder / "server.log"
        env = clean_env()
        proc = subprocess.Popen([*omnirelay(), "serve", *where, "--port", str(port)], stdout=log.open("wb"),
                                stderr=subprocess.STDOUT, env=env)
        wait_healthy(base, [proc], log)
        status, answer = http("POST", base + "/omni/1/scenarios", json.dumps(SCENARIO).encode())
        if status != 200:
            raise SystemExit(f"creating the scenario answered {status}: {answer!r}")
        run = asyncio.run(drive(base, pair, args))
        time.sleep(2.0)  # the engine finishes what it took
        stored = {r[0] for r in pair.fetch(DATABASE, "SELECT message_id FROM messages")}
        (total, distinct), = pair.fetch(DATABASE, "SELECT count(*), count(DISTINCT (message, step)) FROM submissions")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        pair.drop()
        shutil.rmtree(folder, ignore_errors=True)
    lost = [m for m in run["accepted"] if m not in stored]
    result = {
        "machine": machine(),
        "setup": "omnirelay serve on a primary + synchronous streaming standby (libpq multi-host URL)",
        "promote_after_s": args.promote_after,
        "death_to_first_accept_s": round(run["back_at"] - run["died_at"], 3),
        "gateway_share_s": round(run["back_at"] - run["died_at"] - args.promote_after, 3),
        "accepted": len(run["accepted"]),
        "answers": {str(k): v for k, v in sorted(run["answers"].items())},
        "acknowledged_lost": len(lost),
        "steps_submitted_twice": int(total) - int(distinct),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if not lost and total == distinct else 1


if __name__ == "__main__":
    sys.exit(main())
