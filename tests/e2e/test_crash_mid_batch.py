"""A fault in the middle of a batch: one submission of a batch waits for its peer while the others are answered.

Each answered submission's provider id must be stored at once, not when the whole batch is answered: a gateway
killed while one submission is still held must find, after its restart, the receipts of all the others (no
failover, no second message to the same person). Real peers: the node-smpp SMSC (``answer_first``: it answers
N submit_sm and holds the rest), an aiosmtpd server that stalls one recipient's DATA, and Prism behind the
recording proxy holding one recipient's request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from peers.smsc.harness import Smsc
from tests.integration.test_smtp import Mailbox, MailServer
from tests.prism import Prism, RecordingProxy
from tests.prism import prism as prism  # the session fixture

from .conftest import ALADDIN_CONFIG, Gateway
from .test_failover import DELIVERED_TO_HANDSET, get_message, short, wait_reports
from .test_smpp_gateway import smpp_config, wait_bound
from .test_whatsapp_cloud import config as whatsapp_config


def provider_ids(gw: Gateway, channel: str) -> dict[str, str]:
    """messageId -> stored provider id of the ``channel`` step, for the steps that have one."""
    rows = gw.query(
        "SELECT m.message_id, s.provider_id FROM submissions s JOIN messages m ON m.id = s.message"
        " WHERE s.channel = ? AND s.provider_id IS NOT NULL",
        channel,
    )
    return {str(mid): str(pid) for mid, pid in rows}


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def post(gw: Gateway, destinations: list[dict[str, Any]], **body: Any) -> list[str]:
    r = gw.post("/omni/1/advanced", {"destinations": destinations, **body})
    assert r.status == 200, r
    return [m["messageId"] for m in r.json["messages"]]


# --- SMPP: kill -9 while the SMSC holds the 21st submit_sm ------------------------------------------------

SMS_THEN_EMAIL = [{"from": "InfoSMS", "channel": "SMS"}, {"from": "info@shop.example", "channel": "EMAIL"}]


def test_smpp_ids_answered_before_a_crash_are_kept_and_their_receipts_match(
    make_smsc: Callable[..., Smsc], make_gateway: Callable[..., Gateway]
) -> None:
    # answers 20 submits and holds the rest; the receipts fall due after the gateway is gone
    smsc = make_smsc(answer_first=20, dlr_delay_ms=1500)
    gw = make_gateway(smpp_config(smsc, "window_size = 50\nresponse_timeout_seconds = 60"))  # the EMAIL: sandbox
    key = gw.create_scenario(SMS_THEN_EMAIL, name="sms-email")["key"]
    wait_bound(smsc)
    numbers = [f"4179302{i:04d}" for i in range(1, 30) if i % 10][:21]  # none ends in 0: all are delivered
    destinations = [{"to": {"phoneNumber": n, "emailAddress": f"user{n}@example.com"}} for n in numbers]
    validity_s = 20
    mids = post(
        gw,
        destinations,
        scenarioKey=key,
        sms={"text": "Your code is 1234", "validityPeriod": validity_s, "validityPeriodTimeUnit": "SECONDS"},
        email={"text": "Your code is 1234", "subject": "Code"},
    )
    by_number = dict(zip(numbers, mids, strict=True))
    smsc.wait_for(lambda: len(smsc.answered()) == 20 and len(smsc.held()) == 1, what="20 answered, 1 held")
    held_mid = by_number[smsc.held()[0]["destination_addr"]]
    answered = {by_number[p["destination_addr"]]: f"smsc:{p['message_id']}" for p in smsc.answered()}
    # the 20 ids are stored while the SMSC still holds the 21st submit_sm (it never answers it)
    wait_until(lambda: provider_ids(gw, "SMS") == answered, 10, "the 20 answered provider ids to be stored")
    assert not smsc.records("dlr") and not smsc.records("dlr_queued")
    gw.kill9()
    smsc.wait_for(lambda: len(smsc.records("dlr_queued")) >= 20, what="the receipts to fall due meanwhile")
    gw.start()
    # the SMSC sends the 20 receipts to the new bind: each finds its message
    reports = {r["messageId"]: r for r in wait_reports(gw, 20, timeout=validity_s - 2, channel="SMS")}
    assert set(reports) == set(answered)
    assert all(short(r["status"]) == DELIVERED_TO_HANDSET for r in reports.values())
    for mid in answered:
        attempts = get_message(gw, mid)["attempts"]
        assert [a["channel"] for a in attempts if a["state"] not in ("SKIPPED", "PENDING")] == ["SMS"], attempts
    # the held one: submitted but never answered, left to its validity, then it fails over to e-mail
    (late,) = wait_reports(gw, 1, timeout=validity_s + 20, messageId=held_mid)
    assert late["channel"] == "EMAIL" and short(late["status"]) == DELIVERED_TO_HANDSET, late
    assert len(smsc.submits()) == 21  # nothing was submitted again by SMS after the restart
    assert wait_reports(gw, 0, timeout=0) == []  # and no other message reported a second time


# --- WhatsApp Cloud API and SMTP: one submission of a batch stalls, the others' results are stored ------------


def test_whatsapp_answers_are_stored_while_one_send_of_the_batch_is_held(
    prism: Prism, make_gateway: Callable[..., Gateway]
) -> None:
    proxy = RecordingProxy(prism.url).start()
    try:
        gw = make_gateway(whatsapp_config(proxy.url, "http://127.0.0.1:9/inbound"))
        key = gw.create_scenario([{"from": "WhatsAppSender", "channel": "WHATSAPP"}], name="wa")["key"]
        numbers = [f"4179310{i:04d}" for i in range(1, 7)]
        release = proxy.hold(numbers[2])
        mids = post(gw, [{"to": {"phoneNumber": n}} for n in numbers], scenarioKey=key,
                    whatsApp={"text": "Your table is ready"})
        by_number = dict(zip(numbers, mids, strict=True))
        proxy.wait_sends(5)  # the five answered: the proxy records an exchange once it answered it
        answered = {by_number[e.json["to"]]: e.wamid for e in proxy.sends()}
        assert by_number[numbers[2]] not in answered
        # the five wamids are stored while the sixth request is still unanswered
        wait_until(lambda: provider_ids(gw, "WHATSAPP") == answered, 10, "the five answered wamids to be stored")
        assert not release.is_set()
        release.set()
        wait_until(lambda: len(provider_ids(gw, "WHATSAPP")) == 6, 10, "the held one's wamid")
        assert len(proxy.sends()) == 6
        assert all(e.prism_status == 200 for e in proxy.sends())
    finally:
        proxy.stop()


class StallingMailbox(Mailbox):
    """Holds DATA for the recipients in ``stalled`` until their event is set."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled: dict[str, threading.Event] = {}

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for address in envelope.rcpt_tos:
            event = self.stalled.get(address)
            while event is not None and not event.is_set():
                await asyncio.sleep(0.02)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def stalling_smtp() -> Iterator[MailServer]:
    mailbox = StallingMailbox()
    server = MailServer(mailbox)
    server.start()
    yield server
    for event in mailbox.stalled.values():
        event.set()
    server.stop()


def test_smtp_results_are_stored_while_one_message_of_the_batch_stalls(
    stalling_smtp: MailServer, make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(ALADDIN_CONFIG + f"""
[[smtp.servers]]
host = "{stalling_smtp.hostname}"
port = {stalling_smtp.port}
timeout_seconds = 30
""")
    key = gw.create_scenario([{"from": "info@shop.example", "channel": "EMAIL"}], name="mail")["key"]
    addresses = [f"customer{i}@example.com" for i in range(5)]
    mailbox = stalling_smtp.mailbox
    assert isinstance(mailbox, StallingMailbox)
    release = mailbox.stalled[addresses[1]] = threading.Event()
    mids = post(gw, [{"to": {"emailAddress": a}} for a in addresses], scenarioKey=key,
                email={"subject": "Order", "text": "Shipped"})
    stalled = mids[1]
    others = [m for m in mids if m != stalled]
    mailbox.wait(4)
    # the four mails' ids are stored (and they are delivered) while the server still holds the fifth's DATA
    wait_until(lambda: set(provider_ids(gw, "EMAIL")) == set(others), 10, "the four answered mails' ids")
    reports = {r["messageId"]: r for r in wait_reports(gw, 4, timeout=10)}
    assert set(reports) == set(others)
    assert all(short(r["status"]) == DELIVERED_TO_HANDSET for r in reports.values())
    assert not release.is_set() and len(mailbox.received) == 4
    release.set()
    (last,) = wait_reports(gw, 1, timeout=10)
    assert last["messageId"] == stalled and short(last["status"]) == DELIVERED_TO_HANDSET
