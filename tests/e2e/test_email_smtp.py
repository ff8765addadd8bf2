"""E-mail steps through a real mail server: ``omnirelay serve`` with ``[[smtp.servers]]`` pointing at an aiosmtpd
server run by the test.

Infobip's SMS-EMAIL tutorial (an SMS that cannot be delivered falls back to e-mail), a recipient the server
refuses with 550 (the step fails over, or ends the message), and a server that answers 451 (the step is
submitted again with backoff, until delivered or until its validity runs out). Each test uses addresses of its
own; the mail server and the gateway are shared by the module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.test_smtp import Mailbox, MailServer

from .conftest import ALADDIN_CONFIG, Gateway, GatewayPool
from .test_failover import (
    DELIVERED_TO_HANDSET,
    EC_ABSENT_SUBSCRIBER_SM,
    EXPIRED_EXPIRED,
    NO_ERROR,
    REJECTED_DESTINATION,
    get_message,
    history,
    short,
    take_reports,
    ts,
    uid,
    wait_reports,
)

SENDER = "info@travelagency.example"
SMS_EMAIL_FLOW = [{"from": "Travel agency", "channel": "SMS"}, {"from": SENDER, "channel": "EMAIL"}]
EMAIL_SMS_FLOW = [{"from": SENDER, "channel": "EMAIL"}, {"from": "InfoSMS", "channel": "SMS"}]
EMAIL_FLOW = [{"from": SENDER, "channel": "EMAIL"}]
RETRY_SECONDS = 0.2

EC_INVALID_EMAIL_ADDRESS = {
    "groupId": 2, "groupName": "USER_ERRORS", "id": 6006, "name": "EC_INVALID_EMAIL_ADDRESS", "permanent": True,
}
EC_VALIDITY_EXPIRED = {
    "groupId": 2, "groupName": "USER_ERRORS", "id": 4101, "name": "EC_VALIDITY_EXPIRED", "permanent": True,
}


@pytest.fixture(scope="module")
def smtp() -> Iterator[MailServer]:
    server = MailServer(Mailbox())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool, smtp: MailServer) -> Gateway:
    return module_gateways(ALADDIN_CONFIG + f"""
[limits]
min_validity_seconds = 1

[smtp]
retry_seconds = {RETRY_SECONDS}

[[smtp.servers]]
host = "{smtp.hostname}"
port = {smtp.port}
timeout_seconds = 5
""")


def address(prefix: str) -> str:
    return f"{uid(prefix)}@example.org"


def send(gw: Gateway, flow: list[dict[str, str]], to: dict[str, str], **body: object) -> str:
    """Create a scenario with this flow and send one message with it; its messageId."""
    key = gw.create_scenario(flow, name=uid("scenario"))["key"]
    r = gw.post("/omni/1/advanced", {"scenarioKey": key, "destinations": [{"to": to}], **body})
    assert r.status == 200, r
    (message,) = r.json["messages"]
    message_id: str = message["messageId"]
    return message_id


def test_sms_email_tutorial_falls_back_to_email(gw: Gateway, smtp: MailServer) -> None:
    """Infobip's SMS-EMAIL example: the SMS is undeliverable (the sandbox's numbers ending in 1), the e-mail
    goes out through the mail server, and the report says EMAIL, delivered."""
    to = address("john.smith")
    text = "Hello, we are happy to confirm your reservation for the safari trip. 🦁 Bis bald in Zürich!"
    mid = send(gw, SMS_EMAIL_FLOW, {"phoneNumber": "385974241491", "emailAddress": to},
               sms={"text": text, "validityPeriod": 1}, email={"text": text, "subject": "Reservation confirmed! ✅"})

    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "EMAIL" and report["to"] == to, report
    assert short(report["status"]) == DELIVERED_TO_HANDSET and short(report["error"]) == NO_ERROR

    (got,) = smtp.mailbox.to(to)
    msg = got.message
    assert got.mail_from == SENDER and msg["From"] == SENDER
    assert msg["To"] == to
    assert msg["Subject"] == "Reservation confirmed! ✅"
    assert msg.get_content().replace("\r\n", "\n") == text + "\n"

    sms, email = get_message(gw, mid)["attempts"]
    assert (sms["channel"], sms["state"], sms["error"]) == ("SMS", "UNDELIVERABLE", EC_ABSENT_SUBSCRIBER_SM["name"])
    assert (email["channel"], email["state"], email["status"]) == ("EMAIL", "DELIVERED", "DELIVERED_TO_HANDSET")
    assert email["providerId"] == msg["Message-ID"]
    assert take_reports(gw, messageId=mid) == []


def test_550_recipient_fails_over_to_the_next_step(gw: Gateway, smtp: MailServer) -> None:
    to = address("gone")
    smtp.mailbox.refuse(to, "550 5.1.1 <gone>: Recipient address rejected: User unknown in virtual mailbox table")
    mid = send(gw, EMAIL_SMS_FLOW, {"phoneNumber": "41793026725", "emailAddress": to},
               email={"text": "Your ticket", "subject": "Ticket"}, sms={"text": "Your ticket"})

    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET, report
    email, sms = get_message(gw, mid)["attempts"]
    assert (email["channel"], email["state"], email["status"], email["error"]) == (
        "EMAIL", "REJECTED", "REJECTED_DESTINATION", "EC_INVALID_EMAIL_ADDRESS")
    assert email["note"].startswith("550 5.1.1"), email
    assert sms["channel"] == "SMS"
    assert smtp.mailbox.to(to) == []


def test_550_on_the_last_step_ends_the_message_with_that_failure(gw: Gateway, smtp: MailServer) -> None:
    to = address("unknown")
    smtp.mailbox.refuse(to, "550 5.1.1 User unknown")
    mid = send(gw, SMS_EMAIL_FLOW, {"phoneNumber": "41793026731", "emailAddress": to},
               sms={"text": "Hi"}, email={"text": "Hi", "subject": "Hi"})

    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "EMAIL" and report["to"] == to, report
    assert short(report["status"]) == REJECTED_DESTINATION
    assert short(report["error"]) == EC_INVALID_EMAIL_ADDRESS
    msg = get_message(gw, mid)
    assert msg["phase"] == "DONE" and msg["error"] == "EC_INVALID_EMAIL_ADDRESS", msg
    assert smtp.mailbox.to(to) == []


def test_451_is_retried_with_backoff_until_delivered(gw: Gateway, smtp: MailServer) -> None:
    to = address("greylisted")
    smtp.mailbox.refuse(to, "451 4.7.1 Greylisted, please try again later", times=2)
    mid = send(gw, EMAIL_FLOW, {"emailAddress": to}, email={"text": "Hi", "subject": "Hi"})

    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "EMAIL" and short(report["status"]) == DELIVERED_TO_HANDSET, report
    # two deferrals: waited 0.2 s, then 0.4 s
    assert ts(report["doneAt"]) - ts(report["sentAt"]) >= 3 * RETRY_SECONDS - 0.05, report
    assert [r for r in smtp.mailbox.refused if r[1] == to] == [
        ("RCPT", to, "451 4.7.1 Greylisted, please try again later")] * 2
    (got,) = smtp.mailbox.to(to)
    msg = get_message(gw, mid)
    (attempt,) = msg["attempts"]
    assert (attempt["state"], attempt["providerId"]) == ("DELIVERED", got.message["Message-ID"]), msg
    assert len([t for t in history(msg) if "submitted again" in t]) == 2, msg


def test_451_until_the_validity_runs_out_expires_the_step(gw: Gateway, smtp: MailServer) -> None:
    to = address("busy")
    smtp.mailbox.refuse(to, "452 4.2.2 Mailbox full")
    start = time.monotonic()
    mid = send(gw, EMAIL_FLOW, {"emailAddress": to},
               email={"text": "Hi", "subject": "Hi", "validityPeriod": 2, "validityPeriodTimeUnit": "SECONDS"})

    (report,) = wait_reports(gw, 1, timeout=10, messageId=mid)
    assert time.monotonic() - start >= 1.9
    assert report["channel"] == "EMAIL", report
    assert short(report["status"]) == EXPIRED_EXPIRED and short(report["error"]) == EC_VALIDITY_EXPIRED
    tries = len([r for r in smtp.mailbox.refused if r[1] == to])
    assert tries >= 3, "retried within the validity (0.2, 0.4, 0.8 s …)"
    time.sleep(1.0)
    assert len([r for r in smtp.mailbox.refused if r[1] == to]) == tries, "no try after the step expired"
    assert smtp.mailbox.to(to) == []


def test_many_messages_share_a_few_connections(gw: Gateway, smtp: MailServer) -> None:
    bulk = uid("bulk")
    addresses = [address(f"bulk{i}") for i in range(25)]
    key = gw.create_scenario(EMAIL_FLOW, name=bulk)["key"]
    before = smtp.accepted
    r = gw.post("/omni/1/advanced", {"scenarioKey": key, "bulkId": bulk,
                                     "destinations": [{"to": {"emailAddress": a}} for a in addresses],
                                     "email": {"text": "Newsletter", "subject": "News"}})
    assert r.status == 200, r
    reports = wait_reports(gw, 25, bulkId=bulk)
    assert {rep["to"] for rep in reports} == set(addresses)
    assert all(short(rep["status"]) == DELIVERED_TO_HANDSET for rep in reports)
    assert all(len(smtp.mailbox.to(a)) == 1 for a in addresses)
    assert smtp.accepted - before <= 4, "never one connection per message"
    metrics = gw.get("/metrics", auth=None).text
    assert 'omnirelay_smtp_sends_total{result="delivered",server="' in metrics
