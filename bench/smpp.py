"""SMS over SMPP throughput: the node-smpp SMSC alone, then the whole gateway through one SMPP connector.

1. **SMSC ceiling** (``esme``): the gateway's own ESME (:class:`omnirelay.connectors.smpp.connector.SmppChannel`, no
   engine, no database) blasts ``--messages`` submit_sm at the SMSC in batches of 500 and takes every
   receipt; it prints submit_sm_resp/s and receipts/s. That is the most the SMSC (with this ESME, on this
   machine) can take: the ceiling the gateway's figure sits under.
2. **End to end** (``gateway``): ``omnirelay serve`` (SQLite) with one ``[[smpp.connectors]]`` pointing at
   the SMSC, a scenario with one SMS step, ``--messages`` messages posted and their final reports pulled by
   the load generator of ``bench/lib/traffic.py``; messages per second from the first request to the last report,
   accept-to-final p50/p99, and the SMSC's own count of what it accepted (each exactly once).

The SMSC (``peers/smsc/smsc.js``, run ``scripts/install-test-peers`` first) answers at once, keeps no PDU
log, and delivers every message (``SMSC_FAIL`` never matches).

    python3 -m bench.smpp --messages 20000
    python3 -m bench.smpp --only gateway --messages 20000 --window 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.lib.gateway import clean_env, config_toml, omnirelay, wait_healthy
from bench.lib.machine import free_port, machine, wait_quiet
from bench.lib.traffic import drive, failover_gaps, p50, p99
from omnirelay.config import SmppConfig, SmppConnectorConfig
from omnirelay.connectors.smpp.connector import SmppChannel
from omnirelay.domain.delivery import Receipt, Submission
from peers.smsc.harness import PASSWORD, SYSTEM_ID, Smsc

NEVER = "^never$"  # SMSC_FAIL: no destination matches, every receipt is DELIVRD


def _smsc() -> Smsc:
    return Smsc(None, fail=NEVER).start()


async def _esme(port: int, total: int, window: int) -> dict[str, Any]:
    got = 0
    done = asyncio.Event()

    async def sink(receipts: list[Receipt]) -> None:
        nonlocal got
        got += len(receipts)
        if got >= total:
            done.set()

    config = SmppConnectorConfig(name="bench", system_id=SYSTEM_ID, password=PASSWORD, port=port, window_size=window)
    channel = SmppChannel(SmppConfig(connectors=[config]), sink)
    await channel.start()
    if not await channel.wait_bound(10):
        raise SystemExit("could not bind to the SMSC")
    subs = [
        Submission(i, 0, 1, f"m{i}", "SMS", "InfoSMS", f"4179{i:07d}", {"sms": {"text": "Hello by SMS"}}, 3600)
        for i in range(total)
    ]
    started = time.perf_counter()
    accepted = 0

    async def feed(chunks: list[list[Submission]]) -> None:
        nonlocal accepted
        for chunk in chunks:
            results = await channel.submit(chunk)
            accepted += sum(1 for r in results if r.provider_id)

    chunks = [subs[k : k + 500] for k in range(0, total, 500)]
    # Two batches in flight, as the engine keeps the window full across its cycles.
    await asyncio.gather(feed(chunks[0::2]), feed(chunks[1::2]))
    submitted = time.perf_counter() - started
    await asyncio.wait_for(done.wait(), 120)
    received = time.perf_counter() - started
    await channel.close()
    return {
        "messages": total,
        "window": window,
        "accepted": accepted,
        "submit_sm_resp_per_second": round(total / submitted),
        "receipts_per_second": round(got / received),
    }


def _gateway(
    total: int, window: int, per_request: int, concurrency: int, timeout: float, profile: Path | None = None
) -> dict[str, Any]:
    smsc = _smsc()
    root = Path(tempfile.mkdtemp(prefix="omnirelay-smpp-bench-"))
    (root / "omnirelay.toml").write_text(
        config_toml(log_level=None)
        + f"""
[[smpp.connectors]]
name = "smsc"
system_id = "{SYSTEM_ID}"
password = "{PASSWORD}"
port = {smsc.port}
window_size = {window}
"""
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env()
    proc = subprocess.Popen(
        [
            *omnirelay(),
            "serve",
            "--config",
            str(root / "omnirelay.toml"),
            "--data-dir",
            str(root / "data"),
            "--port",
            str(port),
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(url, [proc])
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--threads",
                    "--nonblocking",
                    "-o",
                    str(profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        # the scenario is one SMS step, through SMPP
        flow = [{"from": "InfoSMS", "channel": "SMS"}]
        seconds, got, _ = asyncio.run(drive(url, total, per_request, concurrency, "delivered", timeout, flow=flow))
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        with sqlite3.connect(root / "data" / "omnirelay.db") as db:
            raw = [(r[0], r[1]) for r in db.execute("SELECT created_at, state FROM messages")]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        counts = smsc.stop()
    _, totals = (sorted(x) for x in failover_gaps(raw))
    return {
        "setup": f"SQLite, one omnirelay serve process, one SMPP connector (window {window}) to node-smpp",
        "load_generator": f"bench/lib/traffic.py's: requests of {per_request} destinations, {concurrency} at a time",
        "messages": total,
        "reports": got,
        "seconds": round(seconds, 2),
        "messages_per_second": round(got / seconds),
        "accept_to_final_ms_p50": p50(totals),
        "accept_to_final_ms_p99": p99(totals),
        "smsc_counts": counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=50, help="window_size of the connector (default 50)")
    parser.add_argument("--only", choices=["esme", "gateway"], help="run one of the two measurements")
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS", help="wait for an idle machine")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the gateway (raw format, for pyspy_top.py)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, Any] = {"machine": machine()}
    if args.wait_quiet > 0:
        result["machine_load_before"] = wait_quiet(args.wait_quiet)
    if args.only in (None, "esme"):
        smsc = _smsc()
        try:
            try:
                import uvloop

                run = uvloop.run
            except ImportError:
                run = asyncio.run
            result["smsc_ceiling"] = run(_esme(smsc.port, args.messages, args.window))
        finally:
            result["smsc_ceiling"]["smsc_counts"] = smsc.stop()
    if args.only in (None, "gateway"):
        result["gateway"] = _gateway(
            args.messages, args.window, args.per_request, args.concurrency, args.timeout, args.profile
        )
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
