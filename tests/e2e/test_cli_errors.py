"""The command line off the happy path, run as a user types it: every problem is one line on stderr and a
non-zero exit, never a traceback; help and version; the command line's credentials win over the environment."""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnirelay.client import FOLLOW_POLL_S

from .conftest import ALADDIN_CONFIG, ALADDIN_KEY, Gateway, GatewayPool, omnirelay_command


def omni(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``omnirelay <args>`` in a clean environment (no OMNIRELAY_* but what ``env`` gives)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
    return subprocess.run([*omnirelay_command(), *args], capture_output=True, text=True, env={**clean, **(env or {})},
                          cwd=cwd, timeout=60, check=False)


def assert_one_line(done: subprocess.CompletedProcess[str], expected: str) -> None:
    """Failed with one line on stderr that says ``expected``, and no traceback anywhere."""
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0], lines[0]


@pytest.fixture
def not_json() -> Iterator[str]:
    """A web server on loopback that answers every request with an HTML page, as a wrong --url would."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>It works!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_version_and_help() -> None:
    version = omni("--version")
    assert version.returncode == 0 and re.fullmatch(r"omnirelay \d+\.\d+\.\d+\S*\n", version.stdout), version
    bare = omni()
    assert bare.returncode == 0, bare
    assert bare.stdout.startswith("usage: omnirelay") and all(c in bare.stdout for c in ("serve", "send", "logs"))
    for command in (("logs",), ("reports",), ("send",), ("scenarios", "show")):
        shown = omni(*command, "--help")
        assert shown.returncode == 0, shown
        options = shown.stdout.split("options:")[1]
        # each option, on its own line, has a description: on that line, or on the next one, indented further
        lines = options.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^  -", line):
                described = re.search(r"\S\s{2,}\S", line.strip()) or (
                    i + 1 < len(lines) and re.match(r"^ {6,}\S", lines[i + 1])
                )
                assert described, f"{' '.join(command)}: {line.strip()} has no help"
        assert "--api-key" in shown.stdout and "--key " not in shown.stdout
    show = omni("scenarios", "show", "--help").stdout
    assert "SCENARIO_KEY" in show


def test_every_problem_is_one_line(make_gateway: GatewayPool, tmp_path: Path, not_json: str) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(default=True)
    key = ["--api-key", ALADDIN_KEY]
    assert_one_line(omni("logs", "--url", gw.url.removeprefix("http://"), *key), "is not an http:// or https://")
    assert_one_line(omni("logs", "--url", not_json, *key), "answered HTTP 200 (text/html), not JSON")
    assert_one_line(omni("logs", "--url", "http://127.0.0.1:9", *key), "cannot reach the gateway")
    assert_one_line(omni("logs", "--url", gw.url, "--api-key", "wrong"), "401 Unauthorized")
    assert_one_line(omni("logs", "--url", gw.url), "give --api-key KEY (or OMNIRELAY_KEY)")
    assert_one_line(omni("logs", "--url", gw.url, *key, "--limit", "5000"), "400 ")  # the envelope's text, field
    missing = tmp_path / "missing.csv"
    assert_one_line(omni("send", "--url", gw.url, *key, "--csv", str(missing), "--text", "x"),
                    f"{missing}: cannot read it: No such file or directory")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("to,name\n41790000009,Zoë\n".encode("cp1252"))
    assert_one_line(omni("send", "--url", gw.url, *key, "--csv", str(latin), "--text", "x"),
                    f"{latin}:2: not UTF-8 (byte 0xeb): name the file's encoding, e.g. --encoding cp1252")
    short = tmp_path / "short.csv"
    short.write_text("to,name\n41790000009,a\n41790000019\n")
    assert_one_line(omni("send", "--url", gw.url, *key, "--csv", str(short), "--text", "x"),
                    f"{short}:3: 1 fields, but the first line names 2 columns")
    assert gw.query("SELECT count(*) FROM messages") == [(0,)]
    # argparse's own complaints are one line too (after the usage line)
    bad_validity = omni("send", "--url", gw.url, *key, "--to", "41790000009", "--text", "x", "--validity", "soon")
    assert bad_validity.returncode == 2 and "Traceback" not in bad_validity.stderr
    assert "'soon' is not a duration" in bad_validity.stderr


def test_a_pipe_closed_early_ends_quietly(make_gateway: GatewayPool, tmp_path: Path) -> None:
    """``omnirelay logs | head -1`` through a real pipe, as a table and as JSON; and ``logs --follow | head -1``,
    which is still writing (a message sent after head has gone) when the reader has gone."""
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(default=True)
    r = gw.post("/omni/1/advanced", {"sms": {"text": "x"},
                                     "destinations": [{"to": {"phoneNumber": f"4179{i:07d}"}} for i in range(1000)]})
    assert r.status == 200, r
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
    logs = f"{' '.join(omnirelay_command())} logs --url {gw.url} --api-key {ALADDIN_KEY}"
    status = '; echo "omnirelay exited ${PIPESTATUS[0]}" >&2'
    for extra in ("--limit 1000", "--limit 1000 --json"):
        done = subprocess.run(["bash", "-c", f"{logs} {extra} | head -1{status}"], capture_output=True, text=True,
                              env=clean, timeout=60, check=False)
        assert len(done.stdout.splitlines()) == 1, done.stdout
        assert done.stderr.startswith("omnirelay exited"), done.stderr  # and nothing else on stderr
    follow = subprocess.Popen(["bash", "-c", f"{logs} --limit 1 --follow 2>{tmp_path}/err | head -1{status}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean)
    assert follow.stdout is not None and follow.stdout.readline()  # head printed its line and has gone
    time.sleep(FOLLOW_POLL_S)
    assert gw.post("/omni/1/advanced", {"sms": {"text": "y"}, "destinations": [{"to": {"phoneNumber": "41790000009"}}]}
                   ).status == 200
    _, err = follow.communicate(timeout=30)
    assert err.strip() == "omnirelay exited 1", err
    assert (tmp_path / "err").read_text().strip() == "following new messages (Ctrl-C to stop)"


def test_the_command_line_wins_over_the_environment(make_gateway: GatewayPool) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    env_wrong = {"OMNIRELAY_KEY": "wrong", "OMNIRELAY_URL": gw.url}
    assert omni("scenarios", "list", "--user", "Aladdin", "--password", "open sesame", env=env_wrong).returncode == 0
    assert omni("scenarios", "list", "--api-key", ALADDIN_KEY, env=env_wrong).returncode == 0
    assert_one_line(omni("scenarios", "list", env=env_wrong), "401 Unauthorized")
    env_right = {"OMNIRELAY_KEY": ALADDIN_KEY, "OMNIRELAY_URL": gw.url}
    assert omni("scenarios", "list", env=env_right).returncode == 0
    assert_one_line(omni("scenarios", "list", "--user", "Aladdin", "--password", "wrong", env=env_right),
                    "401 Unauthorized")
    assert_one_line(omni("scenarios", "list", "--user", "Aladdin", env=env_right), "give --password with --user")
    # the old name of --api-key still works, and says it is old
    old = omni("scenarios", "list", "--key", ALADDIN_KEY, env={"OMNIRELAY_URL": gw.url})
    assert old.returncode == 0 and "--key is deprecated: use --api-key" in old.stderr, old


def test_ctrl_c_ends_with_130_and_no_traceback(make_gateway: GatewayPool) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
    proc = subprocess.Popen([*omnirelay_command(), "logs", "--follow", "--url", gw.url, "--api-key", ALADDIN_KEY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean)
    assert proc.stderr is not None
    assert "following new messages" in proc.stderr.readline()
    time.sleep(0.3)  # inside a poll or between two
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
