"""The gateway under benchmark: the benchmark account and its config, the ``omnirelay`` command, and waiting
for a started gateway to answer."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

API_KEY = "bench-key"
HEADERS = {"Authorization": f"App {API_KEY}", "Content-Type": "application/json"}
FLOW = [{"from": "WA", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}]
"""The benchmarks' default scenario: WhatsApp, then SMS."""
SCENARIO = {"name": "b", "flow": FLOW, "default": True}


def config_toml(log_level: str | None = "WARNING", synchronous: str | None = None) -> str:
    """omnirelay.toml with one account ``bench`` (password ``bench``, API key :data:`API_KEY`)."""
    lines = []
    if synchronous:
        lines.append(f'sqlite_synchronous = "{synchronous}"')
    if log_level:
        lines += [f'log_level = "{log_level}"', ""]
    lines += ["[[accounts]]", 'username = "bench"', 'password = "bench"', f'api_keys = ["{API_KEY}"]', ""]
    return "\n".join(lines)


def write_config(folder: Path, synchronous: str | None) -> Path:
    """:func:`config_toml` (at log level WARNING) written to ``folder/omnirelay.toml``."""
    path = folder / "omnirelay.toml"
    path.write_text(config_toml(synchronous=synchronous))
    return path


def omnirelay() -> list[str]:
    """The ``omnirelay`` console script (beside this Python, else on PATH), else its entry point run by Python."""
    beside = Path(sys.executable).parent / "omnirelay"
    if beside.exists():
        return [str(beside)]
    exe = shutil.which("omnirelay")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from omnirelay.cli import main; sys.exit(main())"]


def server_command(plain: bool, count_file: Path, args: list[str]) -> list[str]:
    """:func:`omnirelay` when ``plain``; else the same ``omnirelay.cli.main`` through a launcher that also
    publishes the writer's transaction count (see ``bench/_serve_counting.py``)."""
    if plain:
        return [*omnirelay(), *args]
    return [sys.executable, "-m", "bench._serve_counting", str(count_file), *args]


def clean_env() -> dict[str, str]:
    """This process's environment without ``OMNIRELAY_*``: the gateway takes its settings from the config only."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request with the benchmark account's key; (status, body), also for error statuses."""
    req = urllib.request.Request(url, data=body, method=method, headers=HEADERS)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_healthy(
    base: str, procs: Sequence[subprocess.Popen[bytes]], log: Path | None = None, timeout: float = 30.0
) -> None:
    """Wait until ``base/health`` answers 200; exit (with the server's ``log`` if there is one) when one of
    ``procs`` exits first or ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                tail = f":\n{log.read_text()}" if log is not None else ""
                raise SystemExit(f"a gateway process exited with {proc.returncode} at start{tail}")
        with contextlib.suppress(OSError):
            if http("GET", base + "/health", timeout=1.0)[0] == 200:
                return
        time.sleep(0.1)
    tail = f":\n{log.read_text()}" if log is not None else ""
    raise SystemExit(f"the gateway did not answer /health within {timeout:.0f} s{tail}")
