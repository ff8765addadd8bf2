"""Accept path on PostgreSQL: single-destination POST /omni/1/advanced against ``omnirelay api --processes N``
(and optionally worker processes running beside it), durably committed, driven by wrk.

Makes a fresh database on the given server, migrates it, starts the processes, creates the default scenario,
loads it for ``--seconds``, kills everything with SIGKILL and compares 2xx answers with the rows stored.

    python bench/accept_pg.py --database postgresql://postgres@127.0.0.1:5432/postgres --api-processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).parent))
import _pg
from accept import API_KEY, free_port, http, machine, run_wrk, send_body

CONFIG = f"""
log_level = "WARNING"

[[accounts]]
username = "bench"
password = "bench"
api_keys = ["{API_KEY}"]
"""


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
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")

    folder = Path(tempfile.mkdtemp(prefix="omnirelay-accept-pg-"))
    config = folder / "omnirelay.toml"
    config.write_text(CONFIG)
    url = asyncio.run(_pg.create(args.database))
    omnirelay = str(Path(sys.executable).parent / "omnirelay")
    common = ["--config", str(config), "--database", url]
    subprocess.run([omnirelay, "migrate", *common], check=True, capture_output=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
    procs = [
        subprocess.Popen(
            [omnirelay, "api", *common, "--port", str(port), "--processes", str(args.api_processes)],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
    ]
    procs += [
        subprocess.Popen([omnirelay, "worker", *common], env=env, start_new_session=True, stdout=subprocess.DEVNULL)
        for _ in range(args.workers)
    ]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http("GET", f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.1)
        flow = {
            "name": "b",
            "flow": [{"from": "WA", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}],
            "default": True,
        }
        status, answer = http("POST", f"{base}/omni/1/scenarios", json.dumps(flow).encode())
        assert status == 200, answer
        key = json.loads(answer)["key"]
        result = run_wrk(wrk, f"{base}/omni/1/advanced", send_body(key, 1), args, folder)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait(10)
    rows = asyncio.run(_count(url))
    asyncio.run(_pg.drop(args.database, url))
    ok = int(result["ok"])
    print(
        json.dumps(
            {
                "machine": machine(),
                "setup": f"PostgreSQL, {args.api_processes} API processes, {args.workers} worker process(es)",
                "requests_per_second": round(ok / result["duration_s"]),
                "p50_ms": result["p50_ms"],
                "p99_ms": result["p99_ms"],
                "non2xx": result["non2xx"],
                "answered_2xx": ok,
                "rows_in_messages": rows,
                "durable": rows >= ok,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
