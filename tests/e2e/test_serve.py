"""``omnirelay serve`` as an operator starts it: what it prints, and how it fails."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

from .conftest import ALADDIN_CONFIG, Gateway, free_port, omnirelay_command


def run_serve(tmp_path: Path, *args: str, config: str | None = ALADDIN_CONFIG,
              timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cmd = [*omnirelay_command(), "serve", "--data-dir", str(tmp_path / "data"), *args]
    if config is not None:
        (tmp_path / "c.toml").write_text(config)
        cmd += ["--config", str(tmp_path / "c.toml")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def test_port_in_use_fails_without_announcing(tmp_path: Path) -> None:
    """A port already taken: the server must exit non-zero saying so, and never print that it listens
    (scripts and operators wait for that line to start sending)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_serve(tmp_path, "--port", str(port))
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "address already in use" in out.lower(), out
    assert "omnirelay listening on" not in out, out


def test_listening_line_names_the_address(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    assert f"omnirelay listening on http://127.0.0.1:{gw.port}" in gw.output


def test_port_from_the_config_file(tmp_path: Path) -> None:
    """Without --port, the config file's ``port`` is used."""
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(f"port = {port}\n" + ALADDIN_CONFIG)
    proc = subprocess.Popen([*omnirelay_command(), "serve", "--config", str(config), "--data-dir",
                             str(tmp_path / "data")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line and "listening on" not in line:
            line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([*omnirelay_command(), "serve", "--config", str(tmp_path / "nope.toml"),
                           "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done
    assert "nope.toml" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_unknown_setting_is_a_clear_error(tmp_path: Path) -> None:
    done = run_serve(tmp_path, "--port", str(free_port()), config=ALADDIN_CONFIG + "\n[limits]\nmax_destination = 5\n")
    assert done.returncode == 2, done
    assert "max_destination" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_unknown_route_is_404_in_the_envelope(gateway: Gateway) -> None:
    r = gateway.get("/omni/1/nothing-here")
    assert r.status == 404, r
    assert r.error()["messageId"] == "NOT_FOUND"


def test_wrong_method_is_405_in_the_envelope_with_allow(gateway: Gateway) -> None:
    """RFC 9110: a 405 names the methods the resource supports in ``Allow``."""
    r = gateway.request("PATCH", "/omni/1/scenarios", {"flow": []})
    assert r.status == 405, r
    assert r.error()["messageId"] == "METHOD_NOT_ALLOWED"
    allow = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
    assert {"GET", "POST"} <= allow, r.headers


def test_health_answers_without_credentials(gateway: Gateway) -> None:
    r = gateway.get("/health", auth=None)
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("application/json")
