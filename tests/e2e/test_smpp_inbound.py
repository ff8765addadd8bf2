"""Inbound SMS end to end: ``omnirelay serve`` bound to the node-smpp SMSC, an account with ``inbound_numbers`` and
an ``inbound_url`` served by a webhook receiver; the SMSC sends mobile-originated deliver_sm on the test's command.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import asyncpg
import pytest

from peers.smsc.harness import PASSWORD, SYSTEM_ID, Smsc, gsm7, udh8

from .conftest import ALADDIN_KEY, BOB_KEY, Gateway, app_auth
from .test_webhooks import Post, Receiver

OURS = "4915790000001"
USER = "4917612345678"
RESULT_FIELDS = {"messageId", "from", "to", "text", "cleanText", "keyword", "receivedAt", "smsCount", "price"}

pytestmark = pytest.mark.timeout(180)


def config(smsc: Smsc, inbound_url: str) -> str:
    return f"""
[[accounts]]
username = "Aladdin"
password = "open sesame"
api_keys = ["{ALADDIN_KEY}"]
inbound_url = "{inbound_url}"
inbound_numbers = ["+{OURS}"]

[[accounts]]
username = "bob"
api_keys = ["{BOB_KEY}"]

[webhooks]
retry_base_seconds = 0.5
timeout_seconds = 2

[[smpp.connectors]]
name = "smsc"
system_id = "{SYSTEM_ID}"
password = "{PASSWORD}"
port = {smsc.port}
reconnect_max_seconds = 0.5
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def setup(make_smsc: Callable[..., Smsc], make_gateway: Callable[..., Gateway], receiver: Receiver
          ) -> tuple[Smsc, Gateway, Receiver]:
    smsc = make_smsc()
    gw = make_gateway(config(smsc, receiver.url("/inbound")))
    smsc.wait_for(lambda: smsc.records("bind_transceiver"), what="the gateway's bind")
    return smsc, gw, receiver


def inbound_posts(receiver: Receiver, text: str) -> list[Post]:
    return [p for p in receiver.snapshot() if p.path == "/inbound" and p.json["results"][0]["text"] == text]


def wait_inbound(smsc: Smsc, receiver: Receiver, text: str) -> Post:
    posts: list[Post] = smsc.wait_for(
        lambda: inbound_posts(receiver, text), timeout=20, what=f"the webhook of {text!r}"
    )
    return posts[0]


def test_mo_is_pushed_once_in_infobips_shape_and_pulled_once(setup: tuple[Smsc, Gateway, Receiver]) -> None:
    smsc, gw, receiver = setup
    smsc.send_mo("m1", USER, OURS, gsm7("Hello from the handset @ 5€"))
    post = wait_inbound(smsc, receiver, "Hello from the handset @ 5€")
    body = post.json
    assert set(body) == {"results", "messageCount", "pendingMessageCount"}
    assert (body["messageCount"], body["pendingMessageCount"]) == (1, 0)
    (result,) = body["results"]
    assert set(result) == RESULT_FIELDS
    assert (result["from"], result["to"], result["smsCount"], result["keyword"]) == (USER, OURS, 1, None)
    assert result["cleanText"] == result["text"]
    assert result["price"] == {"pricePerMessage": 0.0, "currency": "EUR"}
    assert result["receivedAt"].endswith("+0000") and len(result["receivedAt"]) == 28
    assert post.report_id == "inbound-sms." + result["messageId"]
    assert post.headers["x-omnirelay-signature"].startswith("sha256=")
    # the SMSC did not get our deliver_sm_resp and sends the MO again: acknowledged, not pushed again
    smsc.resend_mo("m1")
    smsc.wait_for(lambda: len(smsc.mo_resps("m1")) == 2, what="the resend's deliver_sm_resp")
    smsc.send_mo("m2", USER, OURS, gsm7("a later one"))
    wait_inbound(smsc, receiver, "a later one")  # the notifier has delivered what was queued before it
    assert len(inbound_posts(receiver, "Hello from the handset @ 5€")) == 1
    # the pull returns each once, oldest first, within the limit
    first = gw.get("/sms/1/inbox/reports?limit=1")
    assert first.status == 200, first
    assert (first.json["messageCount"], first.json["pendingMessageCount"]) == (1, 1)
    assert first.json["results"] == [result]
    rest = gw.get("/sms/1/inbox/reports").json
    assert [r["text"] for r in rest["results"]] == ["a later one"] and rest["pendingMessageCount"] == 0
    assert gw.get("/sms/1/inbox/reports").json == {"results": [], "messageCount": 0, "pendingMessageCount": 0}
    # another account has none of them
    assert gw.get("/sms/1/inbox/reports", auth=app_auth(BOB_KEY)).json["results"] == []


def test_inbox_pull_refuses_unknown_parameters_and_bad_limits(setup: tuple[Smsc, Gateway, Receiver]) -> None:
    _smsc, gw, _receiver = setup
    for query, field in (("limt=5", "limt"), ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit")):
        r = gw.get(f"/sms/1/inbox/reports?{query}")
        assert r.status == 400, r
        assert field in r.validation(), r
    assert gw.get("/sms/1/inbox/reports", auth=None).status == 401


def test_multipart_mo_arrives_as_one_text(setup: tuple[Smsc, Gateway, Receiver]) -> None:
    smsc, gw, receiver = setup
    parts = ["This is a long message ", "from a subscriber, in three ", "parts [and brackets]"]
    for seq in (3, 1, 2):
        smsc.send_mo(f"p{seq}", USER, OURS, udh8(7, 3, seq) + gsm7(parts[seq - 1]), 0, 0x40)
    smsc.resend_mo("p3")
    text = "".join(parts)
    post = wait_inbound(smsc, receiver, text)
    assert post.json["results"][0]["smsCount"] == 3
    smsc.wait_for(lambda: len(smsc.mo_resps("p3")) == 2, what="the resend's deliver_sm_resp")
    pulled = gw.get("/sms/1/inbox/reports").json["results"]
    assert [(r["text"], r["smsCount"]) for r in pulled] == [(text, 3)]
    assert len([p for p in receiver.snapshot() if p.path == "/inbound"]) == 1


@contextmanager
def writes_blocked(gw: Gateway) -> Iterator[None]:
    """Hold the gateway's inbound SMS writes: SQLite's write lock, or a lock on PostgreSQL's ``inbound_seen``."""
    if gw.database is None:
        conn = sqlite3.connect(gw.db_path, timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    locked, release = threading.Event(), threading.Event()
    database = gw.database

    async def hold() -> None:
        conn = await asyncpg.connect(database)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE inbound_seen IN EXCLUSIVE MODE")
                locked.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait)
        finally:
            await conn.close()

    thread = threading.Thread(target=lambda: asyncio.run(hold()))
    thread.start()
    try:
        assert locked.wait(10)
        yield
    finally:
        release.set()
        thread.join(10)


def metric(gw: Gateway, line_start: str) -> float:
    for line in gw.get("/metrics", auth=None).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_gateway_killed_before_the_mo_is_committed_gets_the_smscs_resend(
    setup: tuple[Smsc, Gateway, Receiver],
) -> None:
    smsc, gw, receiver = setup
    with writes_blocked(gw):
        smsc.send_mo("m1", USER, OURS, gsm7("sent just before the crash"))
        # the gateway has read the deliver_sm and waits for its commit
        smsc.wait_for(lambda: metric(gw, 'omnirelay_smpp_inbound_waiting{connector="smsc"}') == 1,
                      what="the MO to wait for the store")
        gw.kill9()
    assert smsc.mo_resps("m1", status=None) == []  # never acknowledged: the SMSC keeps it
    gw.start()
    post = wait_inbound(smsc, receiver, "sent just before the crash")
    assert post.json["results"][0]["from"] == USER
    smsc.wait_for(lambda: smsc.mo_resps("m1"), what="the deliver_sm_resp after the restart")
    assert [r["status"] for r in smsc.mo_resps("m1", status=None)] == [0]
    assert [r["text"] for r in gw.get("/sms/1/inbox/reports").json["results"]] == ["sent just before the crash"]
    assert len(smsc.records("mo")) == 2  # sent, and sent again after the restart's bind
