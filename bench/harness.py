"""The whole benchmark (issue #7) in one command: measures every figure on this machine and writes BENCHMARKS.md.

    bench/run                       # or: python3 -m bench (from the repository's root)
    bench/run --quick               # small sizes, a couple of minutes: checks the harness, figures not quotable
    bench/run --only accept,memory  # a subset: accept, pipeline, memory, smpp, scale
    bench/run --database postgresql://postgres@127.0.0.1:5432/postgres --out /tmp/BENCHMARKS.md

It runs the scripts beside it (``python3 -m bench.<name>``), each in a process of its own and each writing its
results as JSON, one after the other, and waits before each for the machine to be quiet (``--wait-quiet``): every
figure is skewed by other work on a 2-core machine.

* the floor (``bench/floor.py``, in ``accept`` on SQLite and in ``scale`` on PostgreSQL): the least a durable
  accept costs here (aiohttp + msgspec, group commit, answered after commit, nothing else); every
  single-destination accept figure is also given as a ratio of it, measured minutes apart in the same run;
* ``accept`` (``bench/accept.py``, one ``omnirelay serve``, SQLite): single-destination ``/omni/1/advanced``
  requests/s with p50/p99 at full load (wrk, closed loop), then at half that rate (``bench/openloop.py``, an
  open loop at a constant rate whose latency counts from each request's scheduled time), and
  destinations/s in 1,000-destination requests (wrk);
* ``pipeline`` (``bench/pipeline.py``, one ``omnirelay serve``, SQLite, sandbox): messages/s from accept to
  final report on three paths (delivered; WhatsApp rejected → SMS; WhatsApp silent → expiry → SMS), p50/p99
  of accept → final report and of the WhatsApp failure → the SMS submission, per message, from the database;
* ``memory`` (``bench/memory.py``): peak RSS of one ``omnirelay serve`` while 1,000,000 messages pass through
  it (1,000-destination requests, reports pulled), and RSS at 10/50/100 % of the count;
* ``smpp`` (``bench/smpp.py``, when present): SMS/s from accept to final report through one SMPP connector to
  the node-smpp SMSC, and the SMSC's own ceiling;
* ``scale`` (``bench/accept_pg.py``, ``bench/pipeline.py --database``): the accept and pipeline figures on
  PostgreSQL with 1 and 2 processes (API processes; worker processes). Skipped, and said so, when the
  server at ``--database`` does not answer. SQLite runs as one process only (``omnirelay api`` and
  ``omnirelay worker`` need PostgreSQL).

Only the part of the output file between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` is written; the
rest (hand-written analysis, history) is kept as it is. When the markers are missing they are inserted under
the file's title. Every run's JSON and log are kept in ``--results`` (default a new folder under /tmp).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lib.load import wrk_version
from bench.lib.machine import machine, wait_quiet

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Open-loop generator processes at half load: one Python process fell behind its schedule on PostgreSQL with two
#: API processes (p99 2,449 ms, most of it the generator's own lag).
LOAD_PROCESSES = 2
SECTIONS = ("accept", "pipeline", "memory", "smpp", "scale")
PATH_NAMES = {
    "delivered": "delivered on the first step (WhatsApp)",
    "rejected": "WhatsApp rejected → SMS delivered",
    "silent": "WhatsApp silent → 1 s validity expires → SMS delivered",
}


@dataclass
class Sizes:
    accept_seconds: int
    pipeline_messages: int
    memory_messages: int


FULL = Sizes(accept_seconds=15, pipeline_messages=50_000, memory_messages=1_000_000)
QUICK = Sizes(accept_seconds=3, pipeline_messages=5_000, memory_messages=50_000)


@dataclass
class Run:
    """One script run: what was run, and what it found."""

    name: str
    section: str
    label: str
    argv: list[str]  # the script and its options, without --json
    timeout: float
    result: dict[str, Any] | None = None
    error: str | None = None
    load_before: float | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        """The command that reproduces this row (run from the repository's root)."""
        return "python3 " + shlex.join(self.argv)


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.results = args.results
        self.results.mkdir(parents=True, exist_ok=True)
        self.runs: list[Run] = []
        self.notes: list[str] = []
        self.pg_ok: bool | None = None
        self.pg_version: str | None = None

    # --- running -------------------------------------------------------------------------------------------

    def execute(self, run: Run) -> Run:
        """Wait for a quiet machine, run the script with ``--json``, keep its log and JSON."""
        self.runs.append(run)
        n = len(self.runs)
        print(f"[{n}] {run.label}\n    {run.command}", flush=True)
        if self.args.dry_run:
            run.error = "dry run"
            return run
        run.load_before = wait_quiet(self.args.wait_quiet) if self.args.wait_quiet > 0 else None
        out_json = self.results / f"{run.name}.json"
        log = self.results / f"{run.name}.log"
        out_json.unlink(missing_ok=True)
        cmd = [sys.executable, *run.argv, "--json", str(out_json)]
        started = time.monotonic()
        with log.open("wb") as f:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
            try:
                rc: int | None = proc.wait(timeout=run.timeout)
            except subprocess.TimeoutExpired:  # SIGINT first, so the script's cleanup (stop servers) runs
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                rc = None
        run.seconds = time.monotonic() - started
        if out_json.exists():
            with contextlib.suppress(ValueError):
                run.result = json.loads(out_json.read_text())
        if run.result is None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            why = "timed out" if rc is None else f"exit status {rc}"
            run.error = f"{why}: {' / '.join(tail)[-300:]}" if tail else why
        elif rc not in (0,):
            run.extra["exit"] = rc
        if run.result is not None and run.name == "smpp":
            _lift_smpp(run.result)
        load = f"machine load before {run.load_before:.2f} cores, " if run.load_before is not None else ""
        print(f"    {load}{run.seconds:.0f} s: {self.brief(run)}", flush=True)
        return run

    @staticmethod
    def brief(run: Run) -> str:
        if run.error:
            return f"FAILED ({run.error})"
        r = run.result or {}
        keys = (
            "requests_per_s",
            "requests_per_second",
            "destinations_per_s",
            "messages_per_second",
            "p50_ms",
            "p99_ms",
            "accept_to_final_ms_p99",
            "failover_gap_ms_p99",
            "peak_rss_mb",
            "rss_10pct_mb",
            "rss_100pct_mb",
            "sms_per_second",
            "death_to_first_accept_s",
            "acknowledged_lost",
        )
        return ", ".join(f"{k} {_num(r[k])}" for k in keys if r.get(k) is not None)

    def script(self, name: str) -> list[str]:
        """How to run ``bench/<name>.py``: as the module ``bench.<name>`` (from the repository's root)."""
        return ["-m", f"bench.{name}"]

    def accept(self, destinations: int, rate: float | None = None, split: bool = False) -> Run:
        s = self.sizes.accept_seconds
        argv = [*self.script("accept"), "--destinations", str(destinations), "--seconds", str(s), "--plain"]
        if destinations > 1:
            argv += ["--connections", "16"]
        if rate is not None:
            argv += ["--rate", f"{rate:.0f}", "--load-processes", str(LOAD_PROCESSES)]
        if split:
            argv.append("--worker-process")
        load = f"half load ({rate:,.0f} requests/s)" if rate is not None else "full load"
        name = f"accept-sqlite{SPLIT if split else ''}-d{destinations}" + ("-half" if rate is not None else "")
        setup = "SQLite, api + worker" if split else "SQLite"
        return self.execute(
            Run(name, "accept", f"accept, {setup}, {destinations} destination(s)/request, {load}", argv, s + 240)
        )

    def floor(self, store: str) -> Run:
        """The minimal durable-accept server (``bench/floor.py``): the reference every accept figure is a ratio of."""
        s = self.sizes.accept_seconds
        argv = [*self.script("floor"), "--store", store, "--seconds", str(s)]
        if store == "postgres":
            argv += ["--database", self.args.database]
        where = "SQLite" if store == "sqlite" else "PostgreSQL"
        return self.execute(Run(f"floor-{store}", "accept", f"floor, {where}, 1 destination/request", argv, s + 120))

    def ratio(self, name: str, floor: str) -> float | None:
        """Single-destination accepts/s of run ``name`` as a ratio of the floor run ``floor`` of the same bench run."""
        run = self.find(name)
        rps = _get(run, "requests_per_s") or _get(run, "requests_per_second")
        ref = _get(self.find(floor), "requests_per_s")
        return rps / ref if rps and ref else None

    def accept_pg(self, processes: int, destinations: int, rate: float | None = None) -> Run:
        s = self.sizes.accept_seconds
        argv = [
            *self.script("accept_pg"),
            "--database",
            self.args.database,
            "--api-processes",
            str(processes),
            "--destinations",
            str(destinations),
            "--seconds",
            str(s),
        ]
        if destinations > 1:
            argv += ["--connections", "16"]
        if rate is not None:
            argv += ["--rate", f"{rate:.0f}", "--load-processes", str(LOAD_PROCESSES)]
        load = f"half load ({rate:,.0f} requests/s)" if rate is not None else "full load"
        name = f"accept-pg-api{processes}-d{destinations}" + ("-half" if rate is not None else "")
        label = f"accept, PostgreSQL, {processes} API process(es), {destinations} destination(s)/request, {load}"
        return self.execute(Run(name, "scale", label, argv, s + 240))

    def pipeline(self, path: str, processes: int | None = None, split: bool = False) -> Run:
        m = self.sizes.pipeline_messages
        argv = [*self.script("pipeline"), "--messages", str(m), "--path", path]
        if processes is None:
            name, section, setup = f"pipeline-sqlite{SPLIT if split else ''}-{path}", "pipeline", "SQLite"
            if split:
                argv.append("--worker-process")
                setup = "SQLite, api + worker"
        else:
            argv += ["--database", self.args.database, "--api-processes", str(processes), "--workers", str(processes)]
            name = f"pipeline-pg-{processes}x-{path}"
            section, setup = "scale", f"PostgreSQL, {processes} API + {processes} worker process(es)"
        return self.execute(Run(name, section, f"end to end, {setup}, {PATH_NAMES[path]}", argv, 1800))

    def memory(self) -> Run:
        m = self.sizes.memory_messages
        argv = [*self.script("memory"), "--messages", str(m)]
        return self.execute(Run("memory", "memory", f"memory, {m:,} messages through one serve", argv, 4 * 3600))

    def smpp(self) -> Run | None:
        script = HERE / "smpp.py"
        if not script.exists():
            self.notes.append("SMPP: `bench/smpp.py` is not there yet: no SMPP figures.")
            return None
        argv = self.script("smpp")
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            helptext = subprocess.run(
                [sys.executable, *argv, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
            ).stdout
            if self.args.quick and "--quick" in helptext:
                argv.append("--quick")
            elif self.args.quick and "--messages" in helptext:
                argv += ["--messages", str(self.sizes.pipeline_messages)]
        return self.execute(Run("smpp", "smpp", "SMPP, accept → node-smpp SMSC → final report", argv, 3600))

    def check_pg(self) -> bool:
        if self.pg_ok is None:
            try:
                import asyncpg

                async def probe() -> str:
                    conn = await asyncpg.connect(self.args.database, timeout=5)
                    try:
                        return str(await conn.fetchval("SHOW server_version"))
                    finally:
                        await conn.close()

                self.pg_version = asyncio.run(probe())
                self.pg_ok = True
            except Exception as exc:  # any failure means: no PostgreSQL rows
                self.pg_ok = False
                self.notes.append(
                    f"PostgreSQL at `{self.args.database}` was not reachable ({type(exc).__name__}: {exc}): "
                    "the PostgreSQL rows are skipped."
                )
                print(f"PostgreSQL not reachable ({exc}): skipping its rows", flush=True)
        return bool(self.pg_ok)

    def run_all(self) -> None:
        only = self.args.only
        if "accept" in only:
            self.floor("sqlite")
            for split in (False, True):
                full = self.accept(1, split=split)
                rps = _get(full, "requests_per_s")
                if rps:
                    self.accept(1, rate=max(1.0, rps / 2), split=split)
                else:
                    self.notes.append("Half load: not measured, since the full-load run gave no figure.")
                self.accept(1000, split=split)
        if "pipeline" in only:
            for split in (False, True):
                for path in ("rejected", "delivered", "silent"):
                    self.pipeline(path, split=split)
        if "scale" in only and self.check_pg():
            self.floor("postgres")
            for processes in (1, 2):
                full = self.accept_pg(processes, 1)
                rps = _get(full, "requests_per_second")
                if rps:
                    self.accept_pg(processes, 1, rate=max(1.0, rps / 2))
                self.accept_pg(processes, 1000)
            for processes in (1, 2):
                for path in ("rejected", "delivered", "silent"):
                    self.pipeline(path, processes)
            self.execute(
                Run("pg-failover", "scale", "PostgreSQL failover: primary killed under load, standby promoted",
                    self.script("pg_failover"), 600)
            )
        if "memory" in only:
            self.memory()
        if "smpp" in only:
            self.smpp()

    # --- report --------------------------------------------------------------------------------------------

    def find(self, name: str) -> Run | None:
        return next((r for r in self.runs if r.name == name), None)

    def environment(self) -> list[tuple[str, str]]:
        info = machine()
        versions = []
        for package in ("aiohttp", "uvloop", "msgspec", "asyncpg"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions.append(f"{package} {importlib.metadata.version(package)}")
        versions.append(f"SQLite {sqlite3.sqlite_version}")
        if self.pg_version:
            versions.append(f"PostgreSQL {self.pg_version} (same machine)")
        disk = "unknown"
        with contextlib.suppress(OSError):
            usage = shutil.disk_usage(tempfile.gettempdir())
            disk = f"{tempfile.gettempdir()}: {usage.free / 2**30:,.0f} GiB free of {usage.total / 2**30:,.0f} GiB"
        return [
            ("CPUs", f"{info['nproc']} (usable {info['usable_cpus']}), {info['cpu']}"),
            ("memory", info["memory"]),
            ("kernel", f"Linux {info['kernel']}"),
            ("Python", f"{platform.python_implementation()} {info['python']}"),
            ("software", ", ".join(versions)),
            ("temporary files", disk),
            ("HTTP load generators", f"{wrk_version(shutil.which('wrk'))} (Debian package `wrk`); bench/openloop.py"),
        ]

    def goals(self) -> list[tuple[str, str, str, str]]:
        """(goal, figure, met, source row) for every goal of the issues."""
        rows: list[tuple[str, str, str, str]] = []

        def add(goal: str, run: Run | None, key: str, fmt: str, test: Any, why_not: str = "") -> None:
            value = _get(run, key)
            if run is not None and run.error:
                why_not = "the run failed"
            if value is None:
                rows.append((goal, "not measured" + (f" ({why_not})" if why_not else ""), "—", ""))
                return
            rows.append((goal, fmt.format(value), "met" if test(value) else "missed", run.label if run else ""))

        setups = (
            ("", "one `serve` (SQLite)"),
            (SPLIT, "one API process with the engine in a worker process (`omnirelay api` + `omnirelay worker`)"),
        )
        for (suffix, setup), share in zip(setups, (0.8, 0.9), strict=True):
            goal = f"≥ {share} × the floor's single-destination accepts/s (`bench/floor.py`, same run), {setup}"
            value = self.ratio(f"accept-sqlite{suffix}-d1", "floor-sqlite")
            if value is None:
                rows.append((goal, "not measured", "—", ""))
            else:
                rows.append((goal, f"{value:.2f} ×", "met" if value >= share else "missed", "floor, SQLite"))
        for suffix, setup in setups:
            a1 = self.find(f"accept-sqlite{suffix}-d1")
            add(
                f"≥ 8,000 single-destination accepts/s, {setup}", a1, "requests_per_s", "{:,.0f}/s", lambda v: v >= 8000
            )
            add(
                "≥ 100,000 destinations/s in 1,000-destination requests, same",
                self.find(f"accept-sqlite{suffix}-d1000"),
                "destinations_per_s",
                "{:,.0f}/s",
                lambda v: v >= 100_000,
            )
            half = self.find(f"accept-sqlite{suffix}-d1-half")
            add("p99 ≤ 20 ms at half load, same", half, "p99_ms", "{:,.1f} ms", lambda v: v <= 20)
        rej = self.find("pipeline-sqlite-rejected")
        add(
            "≥ 5,000 messages/s end to end on the failover path (WhatsApp rejected → SMS), one `serve`",
            rej,
            "messages_per_second",
            "{:,.0f}/s",
            lambda v: v >= 5000,
        )
        add(
            "same, `omnirelay api` + `omnirelay worker` on SQLite",
            self.find(f"pipeline-sqlite{SPLIT}-rejected"),
            "messages_per_second",
            "{:,.0f}/s",
            lambda v: v >= 5000,
        )
        add(
            "p99 ≤ 10 ms from a WhatsApp rejection to the SMS submission",
            rej,
            "failover_gap_ms_p99",
            "{:,.1f} ms",
            lambda v: v <= 10,
        )
        mem = self.find("memory")
        mem_msgs = _get(mem, "messages")
        if mem is not None and mem.result and mem_msgs and mem_msgs < 1_000_000:
            rows.append(
                (
                    "peak RSS < 300 MB for 1,000,000 messages through one process, not growing with the count",
                    f"{_get(mem, 'peak_rss_mb'):,.0f} MB after {mem_msgs:,} messages "
                    f"({'flat' if _get(mem, 'flat') else 'growing'}: {_get(mem, 'rss_10pct_mb'):,.0f} → "
                    f"{_get(mem, 'rss_100pct_mb'):,.0f} MB from 10 % to 100 %)",
                    "not judged (fewer than 1,000,000 messages)",
                    mem.label,
                )
            )
        elif mem is not None and mem.result:
            ok = bool(mem.result.get("goal_met"))
            rows.append(
                (
                    "peak RSS < 300 MB for 1,000,000 messages through one process, not growing with the count",
                    f"{_get(mem, 'peak_rss_mb'):,.0f} MB peak; {_get(mem, 'rss_10pct_mb'):,.0f} / "
                    f"{_get(mem, 'rss_50pct_mb'):,.0f} / {_get(mem, 'rss_100pct_mb'):,.0f} MB at 10 / 50 / 100 %",
                    "met" if ok else "missed",
                    mem.label,
                )
            )
        else:
            rows.append(("peak RSS < 300 MB for 1,000,000 messages through one process, flat", "not measured", "—", ""))
        smpp = self.find("smpp")
        add(
            "≥ 2,000 SMS/s accept → final report through one SMPP connector (node-smpp SMSC)",
            smpp,
            "sms_per_second",
            "{:,.0f}/s",
            lambda v: v >= 2000,
            ("bench/smpp.py missing" if not (HERE / "smpp.py").exists() else "") if smpp is None else "",
        )
        pg2 = self.find("accept-pg-api2-d1")
        add(
            "≥ 10,000 single-destination accepts/s on PostgreSQL, two API processes",
            pg2,
            "requests_per_second",
            "{:,.0f}/s",
            lambda v: v >= 10_000,
            "" if self.pg_ok is not False else "PostgreSQL not reachable",
        )
        failover = self.find("pg-failover")
        add(
            "PostgreSQL failover: ≤ 10 s from the primary's death to the first accepted request (promoted at once)",
            failover,
            "death_to_first_accept_s",
            "{:.2f} s",
            lambda v: v <= 10,
        )
        add("same: 0 acknowledged messages lost, 0 steps submitted twice", failover, "acknowledged_lost",
            "{} lost", lambda v: v == 0 and _get(failover, "steps_submitted_twice") == 0)
        pg_best = max(
            (r for r in self.runs if r.name.startswith("pipeline-pg-") and r.name.endswith("-rejected") and r.result),
            key=lambda r: r.result.get("messages_per_second", 0) if r.result else 0,
            default=None,
        )
        sqlite_rate = _get(rej, "messages_per_second")
        if pg_best is not None and sqlite_rate:
            v = pg_best.result.get("messages_per_second", 0) if pg_best.result else 0
            rows.append(
                (
                    "end to end on PostgreSQL at least as high as on SQLite (failover path)",
                    f"{v:,.0f}/s ({pg_best.label.split(', ')[2]}) vs {sqlite_rate:,.0f}/s on SQLite",
                    "met" if v >= sqlite_rate else "missed",
                    pg_best.label,
                )
            )
        else:
            rows.append(("end to end on PostgreSQL at least as high as on SQLite", "not measured", "—", ""))
        return rows

    def markdown(self, started: dt.datetime, finished: dt.datetime) -> str:
        L: list[str] = [BEGIN, ""]
        L.append("## Latest run (generated by `bench/run`; do not edit between the bench markers)")
        L.append("")
        if self.args.quick:
            L.append(
                "> **QUICK RUN**: small sizes (a few seconds per figure) to check the harness; these figures are "
                "not to be quoted. Rerun `bench/run` without `--quick` on a quiet machine."
            )
            L.append("")
        L.append(
            f"Measured on {started:%Y-%m-%d} from {started:%H:%M} to {finished:%H:%M} UTC "
            f"({(finished - started).total_seconds() / 60:.0f} min) with `{shlex.join(self.args.argv)}`; "
            "every run waited first for the machine to be quiet (below 0.2 busy cores for 2 s, or "
            f"{self.args.wait_quiet:.0f} s at most; the load found is in each table). The JSON and log of every run "
            f"were kept in `{self.results}`."
        )
        L.append("")
        L.append("| machine | |")
        L.append("| --- | --- |")
        L += [f"| {k} | {v} |" for k, v in self.environment()]
        L.append("")
        L.append("Everything (server, PostgreSQL, load generator) runs on this one machine and shares its cores.")
        L.append("")
        L.append("### Goals")
        L.append("")
        L.append("| goal | measured | met? |")
        L.append("| --- | --- | --- |")
        L += [f"| {g} | {f} | {m} |" for g, f, m, _ in self.goals()]
        L.append("")
        accept = [r for r in self.runs if r.name.startswith(("floor-", "accept-"))]
        if accept:
            L.append("### Accept: `POST /omni/1/advanced`, durable (answered after commit)")
            L.append("")
            L.append(
                "Each run starts a fresh gateway, loads it, kills it with SIGKILL and checks that every 2xx answer "
                'is in the database ("durable"). The engine runs during the load, as in the product (on '
                "PostgreSQL no worker runs: the API processes alone)."
            )
            L.append("")
            L.append(
                "| setup | destinations / request | load generator | requests/s | × floor | destinations/s | p50 | "
                "p99 | p99.9 | non-2xx | durable | load before | other load during | command |"
            )
            L.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |")
            for r in accept:
                res = r.result or {}
                if r.name.startswith("floor-"):
                    setup = f"**floor**: {res.get('setup', r.label)}"
                elif SPLIT in r.name:
                    setup = "SQLite, `api` + `worker` (engine in its own process)"
                elif "sqlite" in r.name:
                    setup = "SQLite, one `serve`"
                else:
                    setup = f"PostgreSQL, {res.get('api_processes', r.name.split('api')[1][0])} API process(es)"
                if r.error:
                    L.append(f"| {setup} | | | failed: {_md(r.error)} | | | | | | | | | | `{r.command}` |")
                    continue
                rps = res.get("requests_per_s", res.get("requests_per_second"))
                dps = res.get("destinations_per_s", res.get("destinations_per_second"))
                floor = "floor-sqlite" if "sqlite" in r.name else "floor-postgres"
                single = res.get("destinations") == 1 and "half" not in r.name
                times = self.ratio(r.name, floor) if single else None
                L.append(
                    f"| {setup} | {res.get('destinations', '')} | {_md(res.get('load_generator', ''))} | {_num(rps)} | "
                    f"{'—' if times is None else f'{times:.2f}'} | "
                    f"{_num(dps)} | {_ms(res.get('p50_ms'))} | {_ms(res.get('p99_ms'))} | {_ms(res.get('p999_ms'))} | "
                    f"{_num(res.get('non2xx'))} | "
                    f"{'yes' if res.get('durable') else 'NO'} | {_cores(r.load_before)} | "
                    f"{_cores(res.get('other_processes_cores'))} | `{r.command}` |"
                )
            L.append("")
            L.append(
                '"Load before": busy cores measured just before the run; "other load during": CPU used during '
                "the run by processes other than the server and the load generator (SQLite runs only; on PostgreSQL "
                "the database server is itself such a process). Above ~0.1 core a figure is disturbed."
            )
            L.append("")
        pipeline = [r for r in self.runs if r.name.startswith("pipeline-")]
        if pipeline:
            L.append("### End to end on the sandbox: accept → final report")
            L.append("")
            L.append(
                "Messages/s from the first send to the last report pulled; per message, from the database: accept "
                "(`created_at`) → final outcome (`done_at`), and the WhatsApp step's failure (rejection or expiry) "
                "→ the SMS step's submission."
            )
            L.append("")
            L.append(
                "| setup | path | messages | messages/s | accept → final p50 | p99 | failure → SMS submission p50 | "
                "p99 | load generator | load before | command |"
            )
            L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
            for r in pipeline:
                res = r.result or {}
                path = r.name.rsplit("-", 1)[1]
                setup = _md(res.get("setup") or r.label.split(", ")[1])
                if r.error:
                    L.append(f"| {setup} | {PATH_NAMES[path]} | | failed: {_md(r.error)} | | | | | | | `{r.command}` |")
                    continue
                L.append(
                    f"| {setup} | {PATH_NAMES[path]} | {_num(res.get('messages'))} | "
                    f"{_num(res.get('messages_per_second'))} | {_ms(res.get('accept_to_final_ms_p50'))} | "
                    f"{_ms(res.get('accept_to_final_ms_p99'))} | {_ms(res.get('failover_gap_ms_p50'))} | "
                    f"{_ms(res.get('failover_gap_ms_p99'))} | {_md(res.get('load_generator', ''))} | "
                    f"{_cores(r.load_before)} | `{r.command}` |"
                )
            L.append("")
        mem = self.find("memory")
        if mem:
            L.append("### Memory: one `omnirelay serve` (SQLite, sandbox) as messages pass through")
            L.append("")
            res = mem.result or {}
            if mem.error:
                L.append(f"Failed: {_md(mem.error)} (`{mem.command}`)")
            else:
                L.append(
                    "RSS from `/proc/<pid>/status` (VmRSS) when 10 %, 50 % and 100 % of the messages have their "
                    'report; peak is the kernel\'s high-water mark (VmHWM) over the whole run. "Flat": RSS at 100 % '
                    "at most 10 % (+10 MB) above RSS at 10 %."
                )
                L.append("")
                L.append(
                    "| messages | path | load generator | messages/s | RSS at start | 10 % | 50 % | 100 % | peak | "
                    "flat | load before | command |"
                )
                L.append("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
                L.append(
                    f"| {_num(res.get('messages'))} | {PATH_NAMES.get(res.get('path', ''), '')} | "
                    f"{_md(res.get('load_generator', ''))} | {_num(res.get('messages_per_second'))} | "
                    f"{_mb(res.get('rss_start_mb'))} | {_mb(res.get('rss_10pct_mb'))} | "
                    f"{_mb(res.get('rss_50pct_mb'))} | "
                    f"{_mb(res.get('rss_100pct_mb'))} | {_mb(res.get('peak_rss_mb'))} | "
                    f"{'yes' if res.get('flat') else 'no, growing'} | {_cores(mem.load_before)} | `{mem.command}` |"
                )
            L.append("")
        smpp = self.find("smpp")
        if smpp:
            L.append("### SMPP: accept → one SMPP connector → node-smpp SMSC → final report")
            L.append("")
            if smpp.error:
                L.append(f"Failed: {_md(smpp.error)} (`{smpp.command}`)")
            else:
                res = smpp.result or {}
                L.append(
                    "The SMSC ceiling is the gateway's own SMPP client (no engine, no database) blasting submit_sm at "
                    "the SMSC alone; end to end is one `omnirelay serve` (SQLite) with one SMPP connector, messages "
                    "posted and their final reports pulled."
                )
                L.append("")
                L.append("| measurement | messages | figure | accept → final p50 | p99 | setup | load generator |")
                L.append("| --- | ---: | ---: | ---: | ---: | --- | --- |")
                L.append(
                    f"| SMSC ceiling (alone) | {_num(res.get('messages'))} | "
                    f"{_num(res.get('smsc_ceiling_per_second'))} receipts/s "
                    f"({_num(res.get('smsc_submit_resp_per_second'))} submit_sm_resp/s) | | | node-smpp SMSC | "
                    "the gateway's SMPP client, batches of 500 |"
                )
                L.append(
                    f"| end to end through one connector | {_num(res.get('messages'))} | "
                    f"{_num(res.get('sms_per_second'))} messages/s | {_ms(res.get('accept_to_final_ms_p50'))} | "
                    f"{_ms(res.get('accept_to_final_ms_p99'))} | {_md(res.get('setup') or '')} | "
                    f"{_md(res.get('load_generator') or '')} |"
                )
                L.append("")
                L.append(f"Command: `{smpp.command}` (load before {_cores(smpp.load_before)})")
            L.append("")
        if "scale" in self.args.only:
            L += self.scale_table()
        if self.notes:
            L.append("### Notes")
            L.append("")
            L += [f"- {n}" for n in self.notes]
            L.append("")
        L.append(END)
        return "\n".join(L) + "\n"

    def scale_table(self) -> list[str]:
        """Each figure side by side: SQLite (one process), PostgreSQL with 1 and 2 processes."""
        cols = [
            ("SQLite, 1 process (`serve`)", "sqlite"),
            ("SQLite, 2 processes (`api` + `worker`)", "split"),
            ("PostgreSQL, 1 process", "1"),
            ("PostgreSQL, 2 processes", "2"),
        ]
        names = {
            "accept": (
                "accept-sqlite-d1",
                "accept-pg-api{}-d1",
                ("requests_per_s", "requests_per_second"),
                "{:,.0f}/s",
            ),
            "half": ("accept-sqlite-d1-half", "accept-pg-api{}-d1-half", ("p99_ms",), "{:,.1f} ms"),
            "bulk": (
                "accept-sqlite-d1000",
                "accept-pg-api{}-d1000",
                ("destinations_per_s", "destinations_per_second"),
                "{:,.0f}/s",
            ),
        }
        for path in ("rejected", "delivered", "silent"):
            names[path] = (
                f"pipeline-sqlite-{path}",
                f"pipeline-pg-{{}}x-{path}",
                ("messages_per_second",),
                "{:,.0f}/s",
            )
        labels = {
            "accept": "single-destination accepts/s (wrk)",
            "half": "p99 at half load (open loop)",
            "bulk": "destinations/s in 1,000-destination requests",
            "rejected": "end to end, WhatsApp rejected → SMS: messages/s",
            "delivered": "end to end, delivered on the first step: messages/s",
            "silent": "end to end, WhatsApp silent → expiry → SMS: messages/s",
        }
        L = ["### Scale: SQLite and PostgreSQL, 1 and 2 processes", ""]
        L.append(
            'The figures above side by side. On PostgreSQL, "processes" are API processes (`omnirelay api '
            "--processes N`) for accept, and N API + N worker processes end to end. On SQLite, 2 processes are one "
            "`omnirelay api` and one `omnirelay worker` on the same file (one of each is the most a SQLite file "
            "takes)."
        )
        L.append("")
        L.append("| figure | " + " | ".join(c for c, _ in cols) + " |")
        L.append("| --- |" + " ---: |" * len(cols))
        for key, (sqlite_name, pg_name, fields, fmt) in names.items():
            cells = []
            for _, which in cols:
                if which == "sqlite":
                    run = self.find(sqlite_name)
                elif which == "split":
                    run = self.find(
                        sqlite_name.replace("accept-sqlite", f"accept-sqlite{SPLIT}").replace(
                            "pipeline-sqlite", f"pipeline-sqlite{SPLIT}"
                        )
                    )
                else:
                    run = self.find(pg_name.format(which))
                value = next((_get(run, f) for f in fields if _get(run, f) is not None), None)
                cells.append("—" if value is None else fmt.format(value))
            L.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
        L.append("")
        costs = [r for r in self.runs if r.name.startswith("pipeline-pg-") and _get(r, "write_cost")]
        if costs:
            L.append("Write cost per message on PostgreSQL, from the database's own counters over each end-to-end run "
                     "(`pg_stat_database`; WAL from `pg_current_wal_lsn()`, the whole server's):")
            L.append("")
            L.append("| run | WAL bytes | commits | rows inserted | updated | deleted | table bytes |")
            L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in costs:
                c = _get(r, "write_cost")
                L.append(
                    f"| {r.label} | {c['wal_bytes_per_message']:,.0f} | {c['commits_per_message']:.3f} | "
                    f"{c['rows_inserted_per_message']:.2f} | {c['rows_updated_per_message']:.2f} | "
                    f"{c['rows_deleted_per_message']:.2f} | {c['table_bytes_per_message']:,.0f} |"
                )
            L.append("")
        return L

    def write(self, text: str) -> None:
        out: Path = self.args.out
        old = out.read_text() if out.exists() else "# Benchmarks\n"
        if BEGIN in old and END in old:
            head, rest = old.split(BEGIN, 1)
            tail = rest.split(END, 1)[1].lstrip("\n")
            new = head + text + ("\n" + tail if tail else "")
        else:
            lines = old.splitlines(keepends=True)
            if lines and lines[0].startswith("# "):
                body = "".join(lines[1:]).lstrip("\n")
                new = lines[0] + "\n" + text + ("\n" + body if body else "")
            else:
                new = text + ("\n" + old if old else "")
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(new)
        os.replace(tmp, out)


def _lift_smpp(res: dict[str, Any]) -> None:
    """``bench/smpp.py`` nests its two measurements (``gateway``, ``smsc_ceiling``): lift the figures used here."""
    gateway, ceiling = res.get("gateway") or {}, res.get("smsc_ceiling") or {}
    res.setdefault("sms_per_second", gateway.get("messages_per_second"))
    res.setdefault("accept_to_final_ms_p50", gateway.get("accept_to_final_ms_p50"))
    res.setdefault("accept_to_final_ms_p99", gateway.get("accept_to_final_ms_p99"))
    res.setdefault("messages", gateway.get("messages", ceiling.get("messages")))
    res.setdefault("setup", gateway.get("setup"))
    res.setdefault("load_generator", gateway.get("load_generator"))
    res.setdefault("smsc_ceiling_per_second", ceiling.get("receipts_per_second"))
    res.setdefault("smsc_submit_resp_per_second", ceiling.get("submit_sm_resp_per_second"))


SPLIT = "-split"
"""In a run's name: SQLite with the engine in an ``omnirelay worker`` beside ``omnirelay api``."""


def _get(run: Run | None, key: str) -> Any:
    if run is None or run.result is None:
        return None
    return run.result.get(key)


def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and abs(v) < 100 and v != int(v):
        return f"{v:,.1f}"
    if isinstance(v, int | float):
        return f"{v:,.0f}"
    return str(v)


def _ms(v: Any) -> str:
    return "—" if v is None else f"{v:,.1f} ms"


def _mb(v: Any) -> str:
    return "—" if v is None else f"{v:,.0f} MB"


def _cores(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} cores"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small sizes: checks the harness in a few minutes")
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument("--database", default=DEFAULT_DATABASE, help=f"PostgreSQL server (default {DEFAULT_DATABASE})")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="the file to write (default BENCHMARKS.md)")
    p.add_argument("--results", type=Path, default=None, help="folder for every run's JSON and log")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS for the machine to be idle (default 300; --quick 5; 0: don't)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    p.add_argument(
        "--from-results",
        type=Path,
        default=None,
        metavar="DIR",
        help="measure nothing: write the output file again from the results.json of an earlier run's --results",
    )
    args = p.parse_args(argv)
    args.argv = ["bench/run", *(sys.argv[1:] if argv is None else argv)]
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = args.only - set(SECTIONS)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))} (choose from {', '.join(SECTIONS)})")
    if args.wait_quiet is None:
        args.wait_quiet = 5.0 if args.quick else 300.0
    if args.results is None:
        args.results = Path(tempfile.mkdtemp(prefix=f"omnirelay-bench-{dt.datetime.now():%Y%m%d-%H%M}-"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness = Harness(args)
    if args.from_results:
        saved = json.loads((args.from_results / "results.json").read_text())
        harness.runs = [Run(**{k: v for k, v in r.items() if k in Run.__dataclass_fields__}) for r in saved["runs"]]
        harness.notes, harness.pg_ok, harness.pg_version = saved["notes"], saved["pg_ok"], saved["pg_version"]
        started, finished = dt.datetime.fromisoformat(saved["started"]), dt.datetime.fromisoformat(saved["finished"])
        args.argv, args.only, args.quick = saved["argv"], set(saved["only"]), saved["quick"]
        args.wait_quiet, harness.results = saved["wait_quiet"], args.from_results
        harness.write(harness.markdown(started, finished))
        print(f"wrote {args.out} from {args.from_results / 'results.json'}")
        return 0
    started = dt.datetime.now(dt.UTC)
    print(f"results in {args.results}; sections {', '.join(s for s in SECTIONS if s in args.only)}", flush=True)
    harness.run_all()
    finished = dt.datetime.now(dt.UTC)
    text = harness.markdown(started, finished)
    saved = {
        "argv": args.argv,
        "only": sorted(args.only),
        "quick": args.quick,
        "wait_quiet": args.wait_quiet,
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "notes": harness.notes,
        "pg_ok": harness.pg_ok,
        "pg_version": harness.pg_version,
        "runs": [r.__dict__ for r in harness.runs],
    }
    (args.results / "results.json").write_text(json.dumps(saved, indent=2, default=str) + "\n")
    if args.dry_run:
        print(text)
        return 0
    harness.write(text)
    print(f"\nwrote {args.out} (generated section); {len(harness.runs)} runs in {(finished - started).seconds} s")
    for goal, figure, met, _ in harness.goals():
        print(f"  {met:>8}  {goal}: {figure}")
    return 1 if any(r.error for r in harness.runs) else 0


if __name__ == "__main__":
    sys.exit(main())
