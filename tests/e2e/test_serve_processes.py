"""``omnirelay serve`` on SQLite is a supervisor of two processes on the file, the API and the engine: either
killed with SIGKILL under load is started again with nothing acknowledged lost and nothing sent twice; SIGTERM
stops both; the supervisor killed takes its children with it; one port answers ``/metrics`` for both; a child
that cannot start is one line and status 2.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .cluster import CONFIG as SPLIT_CONFIG
from .cluster import KEY as SPLIT_KEY
from .cluster import check, run
from .conftest import ALADDIN_CONFIG, STORE, WHATSAPP_SMS_FLOW, Gateway, app_auth, omnirelay_command

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(STORE == "postgres", reason="serve supervises two processes on SQLite only"),
]


def children(gw: Gateway) -> dict[str, int]:
    """The process ids of the supervisor's children, by role (``api``, ``worker``)."""
    assert gw.proc is not None
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != gw.proc.pid:
            continue
        for role in ("api", "worker"):
            if f"omnirelay-serve-{role}".encode() in argv:
                found[role] = int(entry.name)
    return found


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(what: Callable[[], bool], seconds: float, why: str) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(why)
        time.sleep(0.05)


def steps_taken_twice(gw: Gateway) -> int:
    rows = gw.query("SELECT count(*) FROM (SELECT message, step FROM submissions GROUP BY 1, 2 HAVING count(*) > 1)")
    return int(rows[0][0])


def kill9_child(gw: Gateway, role: str) -> None:
    """SIGKILL one child and wait until the supervisor has a new one of that role running."""
    name = {"api": "API", "worker": "engine"}[role]
    before = children(gw)[role]
    again = gw.output.count(f"the {name} process is running again")
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: gw.output.count(f"the {name} process is running again") > again, 60,
             f"the {name} process was not started again:\n{gw.output}")
    assert children(gw)[role] != before


def test_the_default_is_two_processes_and_single_process_is_one(make_gateway: Callable[..., Gateway]) -> None:
    two = make_gateway()
    assert set(children(two)) == {"api", "worker"}
    assert "(API, engine and webhooks in two processes;" in two.output
    assert two.output.count("omnirelay listening on") == 1
    one = make_gateway(extra_args=("--single-process",))
    assert children(one) == {}
    assert "(API, engine and webhooks;" in one.output
    by_env = make_gateway(env={"OMNIRELAY_SINGLE_PROCESS": "1"})
    assert children(by_env) == {}


async def test_each_child_killed_under_load_loses_nothing_and_sends_nothing_twice(
    make_gateway: Callable[..., Gateway],
) -> None:
    gw = make_gateway(SPLIT_CONFIG, default_auth=app_auth(SPLIT_KEY))
    pids = children(gw)

    async def kill_both() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(kill9_child, gw, "api")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(kill9_child, gw, "worker")

    accepted, first, second = await run(gw, 5_000, kill_both)  # type: ignore[arg-type]
    check(5_000, accepted, first, second, both_pollers=False)
    assert steps_taken_twice(gw) == 0
    assert gw.running, "the supervisor itself carried on"
    now = children(gw)
    assert now["api"] != pids["api"] and now["worker"] != pids["worker"]
    assert "the API process ended (killed by signal SIGKILL)" in gw.output
    assert "the engine process ended (killed by signal SIGKILL)" in gw.output
    assert gw.output.count("omnirelay listening on") == 1


def test_sigterm_stops_both_children_and_exits_0(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway()
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    sent = gw.post("/omni/1/advanced", {"destinations": [{"to": {"phoneNumber": "41793026727"}}],
                                        "whatsApp": {"text": "hi"}, "sms": {"text": "hi"}})
    assert sent.status == 200, sent
    pids = children(gw)
    assert gw.stop() == 0, gw.outputs[-1]
    assert not any(alive(pid) for pid in pids.values()), "no child outlives its supervisor's SIGTERM"
    assert "Traceback" not in gw.outputs[-1], gw.outputs[-1]


def test_supervisor_killed_takes_its_children_and_a_new_serve_starts_at_once(
    make_gateway: Callable[..., Gateway],
) -> None:
    gw = make_gateway()
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    pids = children(gw)
    gw.kill9()
    gw.start()  # at once: while the old children may still be ending, it waits for their roles on the file
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), 10, f"orphans left: {pids}")
    sent = gw.post("/omni/1/advanced", {"destinations": [{"to": {"phoneNumber": "41793026728"}}],
                                        "whatsApp": {"text": "hi"}, "sms": {"text": "hi"}})
    assert sent.status == 200, sent
    message_id = sent.json["messages"][0]["messageId"]
    reports: list[str] = []

    def reported() -> bool:
        reports.extend(r["messageId"] for r in gw.get("/omni/1/reports").json["results"])
        return message_id in reports

    wait_for(reported, 30, "the new serve's engine never reported the message")


def test_metrics_of_both_processes_on_one_port_as_valid_exposition(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(ALADDIN_CONFIG + '\n[[sandbox.rules]]\nchannel = "WHATSAPP"\noutcome = "REJECTED"\n')
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    sent = gw.post("/omni/1/advanced", {"destinations": [{"to": {"phoneNumber": f"4179302{i:04d}"}} for i in range(20)],
                                        "whatsApp": {"text": "hi"}, "sms": {"text": "hi"}})
    assert sent.status == 200, sent
    reported: list[str] = []

    def all_reported() -> bool:
        reported.extend(r["messageId"] for r in gw.get("/omni/1/reports").json["results"])
        return len(reported) == 20

    wait_for(all_reported, 60, "not every message was reported")
    answer = gw.get("/metrics")
    assert answer.status == 200, answer
    text = answer.text
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), f"a family typed twice: {Counter(types).most_common(3)}"
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def total(family: str, **labels: str) -> float:
        return sum(s.value for s in families[family].samples
                   if s.name.endswith("_total") and labels.items() <= s.labels.items())

    assert total("omnirelay_accepted_messages") == 20  # counted by the API process
    assert total("omnirelay_submits") == 40  # by the engine process: WhatsApp, then SMS, for each
    assert total("omnirelay_outcomes", channel="WHATSAPP") == 20
    assert total("omnirelay_final_reports", channel="SMS") == 20
    requests = [s for s in families["omnirelay_http_request_seconds"].samples
                if s.name.endswith("_count") and s.labels.get("route") == "/omni/1/advanced"]
    assert sum(s.value for s in requests) == 1
    assert families["omnirelay_queue_depth"].samples[0].value == 0


def test_a_child_that_cannot_start_is_one_line_and_status_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "omnirelay.db").write_bytes(b"this is not a database, but a file of text " * 100)
    done = subprocess.run([*omnirelay_command(), "serve", "--data-dir", str(data), "--port", "0"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done
    out = done.stdout + done.stderr
    lines = [line for line in out.splitlines() if line.startswith("omnirelay: ")]
    assert len(lines) == 1, out  # both children fail alike: the reason is shown once
    assert "cannot open the database" in lines[0] and str(data / "omnirelay.db") in lines[0], out
    assert "Traceback" not in out and "omnirelay listening on" not in out, out
