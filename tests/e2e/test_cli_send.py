"""``omnirelay send`` and ``omnirelay logs --follow`` as a user runs them: CSV files as spreadsheets write them,
checked whole before anything is sent, safe to send again; ``--wait``'s exit status; colour only on a terminal."""

from __future__ import annotations

import codecs
import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from .conftest import ALADDIN_CONFIG, ALADDIN_KEY, Gateway, GatewayPool, omnirelay_command

ESCAPE = "\x1b["
#: Sandbox rules: one number is never delivered, one never gets a report, every other is delivered.
RULES_CONFIG = ALADDIN_CONFIG + """
[limits]
min_validity_seconds = 1

[[sandbox.rules]]
to = "^41790000666$"
outcome = "UNDELIVERABLE"

[[sandbox.rules]]
to = "^41790000777$"
outcome = "EXPIRED"
"""
SMS_ONLY = [{"from": "InfoSMS", "channel": "SMS"}]


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_") and k not in ("NO_COLOR",
                                                                                                   "FORCE_COLOR")}
    return {**clean, **extra}


def send(gw: Gateway, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*omnirelay_command(), "send", "--url", gw.url, "--api-key", ALADDIN_KEY, *args],
                          capture_output=True, text=True, env=env(**extra), timeout=120, check=False)


def count(gw: Gateway, where: str = "1 = 1", *args: object) -> int:
    return int(gw.query(f"SELECT count(*) FROM messages WHERE {where}", *args)[0][0])


def numbers(n: int, start: int = 1) -> list[str]:
    return [f"4179{i:07d}" for i in range(start, start + n)]


def test_excel_files_are_read_as_excel_writes_them(make_gateway: GatewayPool, tmp_path: Path) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(SMS_ONLY, default=True)
    bom = tmp_path / "utf8-bom.csv"  # Excel's "CSV UTF-8", in a locale whose lists are separated by ';'
    bom.write_bytes(codecs.BOM_UTF8 + "Name;To\r\nZoë;41790000011\r\nJürg;41790000012\r\n;\r\n".encode())
    cp1252 = tmp_path / "cp1252.csv"  # Excel's plain "CSV" on Windows
    cp1252.write_bytes("to,name\r\n41790000013,Zoë\r\n".encode("cp1252"))
    for path, extra, rows in ((bom, (), 2), (cp1252, ("--encoding", "cp1252"), 1)):
        done = send(gw, "--csv", str(path), "--text", "hi", *extra)
        assert done.returncode == 0, done
        bulk = re.search(r"\(bulk id (csv-[0-9a-f]+)\)", done.stdout)
        assert bulk, done.stdout
        assert f"{rows} accepted" in done.stdout
        assert count(gw, "bulk_id = ?", bulk.group(1)) == rows
    assert sorted(bytes(r[0]).decode() for r in gw.query("SELECT to_json FROM messages")) == [
        '{"phoneNumber":"41790000011"}', '{"phoneNumber":"41790000012"}', '{"phoneNumber":"41790000013"}']


def test_a_bad_row_late_in_the_file_sends_nothing_and_names_its_line(make_gateway: GatewayPool,
                                                                     tmp_path: Path) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(SMS_ONLY, default=True)
    rows = ["to,name"] + [f"{n},customer" for n in numbers(1500)]
    rows[1201] = "0791234567,customer"  # line 1,202
    path = tmp_path / "customers.csv"
    path.write_text("\n".join(rows) + "\n")
    done = send(gw, "--csv", str(path), "--text", "hi")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"omnirelay send: {path}:1202: to '0791234567' must start with the country code, not 0"]
    assert count(gw) == 0  # nothing was sent, not even the 1,201 rows before it


def test_sending_the_same_file_again_sends_nothing_twice(make_gateway: GatewayPool, tmp_path: Path) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(SMS_ONLY, default=True)
    path = tmp_path / "customers.csv"
    path.write_text("to\n" + "\n".join(numbers(2500)) + "\n")  # more than one request's worth
    first = send(gw, "--csv", str(path), "--text", "hi", "--json")
    assert first.returncode == 0, first.stderr
    sent = json.loads(first.stdout)
    assert len(sent["messages"]) == 2500 and count(gw) == 2500
    # again, from a copy of the file elsewhere: the same content is the same file
    copy = tmp_path / "copy of customers.csv"
    copy.write_bytes(path.read_bytes())
    again = send(gw, "--csv", str(copy), "--text", "hi")
    assert again.returncode == 0, again
    assert "sent before (bulk id " in again.stderr, again.stderr
    assert count(gw) == 2500  # nothing was sent twice
    assert re.search(rf"\(bulk id {sent['bulkId']}\)", again.stdout)
    # another text is another message; a new --bulk-id sends the same file again on purpose
    assert send(gw, "--csv", str(path), "--text", "another").returncode == 0
    assert count(gw) == 5000
    assert send(gw, "--csv", str(path), "--text", "hi", "--bulk-id", "second-run").returncode == 0
    assert count(gw) == 7500 and count(gw, "bulk_id = 'second-run'") == 2500
    # another file under the same --bulk-id is other messages: its rows are sent, none taken for a duplicate
    other = tmp_path / "other.csv"
    other.write_text("to\n" + "\n".join(numbers(10, start=5001)) + "\n")
    done = send(gw, "--csv", str(other), "--text", "hi", "--bulk-id", "second-run")
    assert done.returncode == 0 and "10 accepted" in done.stdout and "rejected" not in done.stdout, done
    assert "sent before" not in done.stderr
    assert count(gw) == 7510 and count(gw, "bulk_id = 'second-run'") == 2510


def test_wait_exits_1_unless_every_message_was_delivered(make_gateway: GatewayPool) -> None:
    gw: Gateway = make_gateway(RULES_CONFIG)
    gw.create_scenario(SMS_ONLY, default=True)
    delivered = send(gw, "--to", "41790000009", "--to", "41790000019", "--text", "hi", "--wait", "30")
    assert delivered.returncode == 0, delivered
    assert "2 accepted, 2 finished" in delivered.stdout and "not delivered" not in delivered.stdout

    failed = send(gw, "--to", "41790000009", "--to", "41790000666", "--text", "hi", "--wait", "30")
    assert failed.returncode == 1, failed
    assert "1 not delivered:" in failed.stdout
    listed = failed.stdout.split("not delivered:")[1]
    assert "41790000666" in listed and "41790000009" not in listed

    pending = send(gw, "--to", "41790000777", "--text", "hi", "--wait", "1")
    assert pending.returncode == 1, pending
    assert "still pending" in pending.stdout and "41790000777" in pending.stdout.split("not delivered:")[1]

    # --validity: the message that never gets a report expires when its validity runs out, and --wait sees it
    expired = send(gw, "--to", "41790000777", "--text", "hi", "--validity", "2s", "--wait", "30", "--json")
    assert expired.returncode == 1, expired
    outcome = json.loads(expired.stdout)["outcomes"]
    assert [o["status"]["groupName"] for o in outcome] == ["EXPIRED"], outcome


def test_logs_follow_shows_a_message_sent_after_it_started(make_gateway: GatewayPool) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(SMS_ONLY, default=True)
    before = gw.post("/omni/1/advanced", {"sms": {"text": "a"}, "destinations": [{"to": {"phoneNumber": "41790000001"},
                                                                                  "messageId": "before"}]})
    assert before.status == 200, before
    proc = subprocess.Popen([*omnirelay_command(), "logs", "--follow", "--json", "--url", gw.url, "--api-key",
                             ALADDIN_KEY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert json.loads(proc.stdout.readline())["messageId"] == "before"
        assert "following new messages" in proc.stderr.readline()
        for i in range(3):
            r = gw.post("/omni/1/advanced", {"sms": {"text": "b"},
                                             "destinations": [{"to": {"phoneNumber": f"4179000010{i}"},
                                                               "messageId": f"after-{i}"}]})
            assert r.status == 200, r
            assert json.loads(proc.stdout.readline())["messageId"] == f"after-{i}"
        time.sleep(3)  # several polls, each looking back over what it has shown
    finally:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert out == "", out  # nothing was shown twice


def run_on_terminal(args: list[str], **extra: str) -> str:
    """Run a command with its stdout and stderr on a pseudo-terminal, as in a terminal window; what it showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env=env(TERM="xterm-256color", COLUMNS="200", **extra))
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other side closed
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=30)
    os.close(leader)
    return shown.decode("utf-8", "replace")


def test_colour_on_a_terminal_only(make_gateway: GatewayPool, tmp_path: Path) -> None:
    gw: Gateway = make_gateway(RULES_CONFIG)
    gw.create_scenario(SMS_ONLY, default=True)
    path = tmp_path / "to.csv"
    path.write_text("to\n" + "\n".join(numbers(300)) + "\n")
    command = [*omnirelay_command(), "send", "--url", gw.url, "--api-key", ALADDIN_KEY, "--csv", str(path),
               "--text", "hi", "--wait", "30"]
    coloured = run_on_terminal(command)
    assert ESCAPE in coloured and "300 accepted, 300 finished" in coloured, coloured[-3000:]
    assert re.search(r"sending.*300/300", coloured) and "/s" in coloured  # the progress bar, with its rate
    # on a terminal with NO_COLOR: the same, without colour
    plain = run_on_terminal([*command, "--bulk-id", "second"], NO_COLOR="1")
    assert "300 accepted" in plain and not re.search(r"\x1b\[[0-9;]*m", plain), plain[-3000:]
    # piped: no escape codes at all (no colour, no progress bar), and the table is not wrapped
    piped = subprocess.run([*omnirelay_command(), "logs", "--url", gw.url, "--api-key", ALADDIN_KEY, "--limit", "5"],
                           capture_output=True, text=True, env=env(), timeout=60, check=False)
    assert piped.returncode == 0 and ESCAPE not in piped.stdout + piped.stderr, piped
    assert all(re.match(r"^\S+\s+\S+\s+SMS\s+DELIVERED_TO_HANDSET", line) for line in piped.stdout.splitlines()[1:])


def test_ctrl_c_midway_then_the_same_command_sends_the_rest_once(make_gateway: GatewayPool, tmp_path: Path) -> None:
    gw: Gateway = make_gateway(ALADDIN_CONFIG)
    gw.create_scenario(SMS_ONLY, default=True)
    path = tmp_path / "customers.csv"
    path.write_text("to\n" + "\n".join(numbers(20_000)) + "\n")
    command = [*omnirelay_command(), "send", "--url", gw.url, "--api-key", ALADDIN_KEY, "--csv", str(path),
               "--text", "hi"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    while count(gw) == 0:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    told = re.search(r"omnirelay send: interrupted: ([\d,]+) of 20,000 rows sent: run the same command again", err)
    assert told, err
    stored = count(gw)
    assert 0 < stored < 20_000 and stored >= int(told.group(1).replace(",", ""))
    again = send(gw, "--csv", str(path), "--text", "hi")
    assert again.returncode == 0 and "20000 accepted" in again.stdout, again
    assert "sent before" in again.stderr
    assert count(gw) == 20_000
    assert gw.query("SELECT count(DISTINCT to_json) FROM messages") == [(20_000,)]  # every number, once
