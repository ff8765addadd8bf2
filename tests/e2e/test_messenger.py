"""Facebook Messenger end to end: a real ``omnirelay serve`` with a ``[[messenger.pages]]`` whose ``base_url``
points at the fake Send API (tests/integration/fakes/messenger.py, which refuses what Meta's reference
refuses), and delivery / read webhooks posted to ``/webhooks/messenger/{sender}`` signed the way Meta signs
them. The tutorial's failover, FACEBOOK then SMS: the SMS step is the sandbox (a number ending in 0 is
delivered).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.integration.fakes.messenger import APP_SECRET, PAGE_ID, PAGE_TOKEN, FakeMessenger, Send

from .conftest import ALADDIN_KEY, Gateway, GatewayPool
from .test_failover import DELIVERED_TO_HANDSET, NO_ERROR, get_message, history, short, uid, wait_message, wait_reports
from .test_webhooks import Receiver

SENDER = "MyPage"
VERIFY_TOKEN = "messenger-verify"
FLOW = [{"from": SENDER, "channel": "FACEBOOK"}, {"from": "InfoSMS", "channel": "SMS"}]


def config(base_url: str, inbound_url: str) -> str:
    return f"""
[[accounts]]
username = "Aladdin"
password = "open sesame"
api_keys = ["{ALADDIN_KEY}"]
inbound_url = "{inbound_url}"

[limits]
min_validity_seconds = 1

[webhooks]
retry_base_seconds = 0.5
timeout_seconds = 2

[[messenger.pages]]
sender = "{SENDER}"
page_id = "{PAGE_ID}"
page_access_token = "{PAGE_TOKEN}"
app_secret = "{APP_SECRET}"
verify_token = "{VERIFY_TOKEN}"
base_url = "{base_url}"
account = "Aladdin"
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMessenger]:
    f = FakeMessenger()
    f.start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool, fake: FakeMessenger, receiver: Receiver) -> Gateway:
    gateway = module_gateways(config(fake.url, receiver.url("/inbound")))
    gateway.create_scenario(FLOW, default=True)
    return gateway


_numbers = iter(range(10_000))


def person(fake: FakeMessenger, *, known: bool = True) -> tuple[str, str]:
    """A fresh (PSID, phone number ending in 0) pair; ``known``: the person talked to the page."""
    n = next(_numbers)
    psid = f"67839577516{n:05d}"
    if known:
        fake.add_user(psid)
    return psid, f"4179{n:06d}0"


def send(gw: Gateway, psid: str, phone: str, **body: Any) -> str:
    payload = {"destinations": [{"to": {"facebookUserKey": psid, "phoneNumber": phone}}],
               "facebook": {"text": "Your order has shipped"}, "sms": {"text": "Your order has shipped (SMS)"},
               **body}
    r = gw.post("/omni/1/advanced", payload)
    assert r.status == 200, r
    message_id: str = r.json["messages"][0]["messageId"]
    return message_id


def accepted(gw: Gateway, fake: FakeMessenger, message_id: str, psid: str) -> Send:
    """The message's send, once the gateway stored its provider id."""
    (sent,) = fake.wait_sends(psid)
    assert sent.status == 200, sent.answer
    wait_message(gw, message_id, lambda m: any(a.get("providerId") == f"{psid}:{sent.mid}" for a in m["attempts"]))
    return sent


def post(gw: Gateway, fake: FakeMessenger, *events: dict[str, Any], signature: str | None = None) -> int:
    raw = fake.notification(*events)
    r = gw.post(f"/webhooks/messenger/{SENDER}", raw, auth=None,
                headers={"X-Hub-Signature-256": signature or fake.sign(raw)})
    return r.status


def test_delivered_on_the_first_step(gw: Gateway, fake: FakeMessenger) -> None:
    psid, phone = person(fake)
    mid = send(gw, psid, phone)
    sent = accepted(gw, fake, mid, psid)
    assert sent.json == {"recipient": {"id": psid}, "messaging_type": "UPDATE",
                         "message": {"text": "Your order has shipped"}}
    assert post(gw, fake, fake.delivery(psid, [str(sent.mid)], int(time.time() * 1000))) == 200
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "FACEBOOK"
    assert short(report["status"]) == DELIVERED_TO_HANDSET and short(report["error"]) == NO_ERROR
    assert get_message(gw, mid)["attempts"][-1]["channel"] == "FACEBOOK"  # SMS never tried


def test_a_read_watermark_marks_every_earlier_message_seen(gw: Gateway, fake: FakeMessenger) -> None:
    psid, phone = person(fake)
    first = send(gw, psid, phone)
    accepted(gw, fake, first, psid)
    second = send(gw, psid, phone)
    fake.wait_sends(psid, 2)
    wait_message(gw, second, lambda m: any(a.get("providerId") for a in m["attempts"]))
    time.sleep(0.05)
    # delivered by watermark only (no mids), then read: both messages, found by the user and the time
    watermark = int(time.time() * 1000)
    assert post(gw, fake, fake.delivery(psid, None, watermark)) == 200
    assert post(gw, fake, fake.read(psid, watermark)) == 200
    reports = [*wait_reports(gw, 1, messageId=first), *wait_reports(gw, 1, messageId=second)]
    assert {r["channel"] for r in reports} == {"FACEBOOK"}
    for message_id in (first, second):
        msg = wait_message(gw, message_id, lambda m: m["attempts"][0]["state"] == "SEEN")
        assert msg["attempts"][0]["channel"] == "FACEBOOK"
    # the user opens the conversation again: the same watermark marks nothing twice
    assert post(gw, fake, fake.read(psid, watermark)) == 200
    time.sleep(0.3)
    for message_id in (first, second):
        assert not [line for line in history(get_message(gw, message_id)) if "late report" in line]


def test_a_read_before_the_send_changes_nothing(gw: Gateway, fake: FakeMessenger) -> None:
    psid, phone = person(fake)
    earlier = int(time.time() * 1000) - 60_000
    mid = send(gw, psid, phone)
    sent = accepted(gw, fake, mid, psid)
    assert post(gw, fake, fake.read(psid, earlier)) == 200  # a watermark older than the message
    time.sleep(0.3)
    assert get_message(gw, mid)["attempts"][0]["state"] == "ACCEPTED"
    assert post(gw, fake, fake.delivery(psid, [str(sent.mid)], int(time.time() * 1000))) == 200
    wait_reports(gw, 1, messageId=mid)


def test_not_a_user_fails_over_to_sms_and_the_report_says_so(gw: Gateway, fake: FakeMessenger) -> None:
    psid, phone = person(fake, known=False)
    mid = send(gw, psid, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET
    (sent,) = fake.sent_to(psid)
    assert sent.status == 400 and sent.answer["error"]["error_subcode"] == 2018001
    facebook = get_message(gw, mid)["attempts"][0]
    assert (facebook["channel"], facebook["state"], facebook["error"]) == ("FACEBOOK", "REJECTED", "EC_UNKNOWN_USER")
    assert "No matching user found" in facebook["note"] and "2018001" in facebook["note"]

    # remembered: the next message to this destination skips Messenger (no second send)
    second = send(gw, psid, phone)
    (report,) = wait_reports(gw, 1, messageId=second)
    assert report["channel"] == "SMS" and len(fake.sent_to(psid)) == 1
    assert "capability memory" in get_message(gw, second)["attempts"][0]["note"]


def test_a_forged_signature_gets_401_and_changes_nothing(gw: Gateway, fake: FakeMessenger) -> None:
    psid, phone = person(fake)
    mid = send(gw, psid, phone)
    sent = accepted(gw, fake, mid, psid)
    event = fake.delivery(psid, [str(sent.mid)], int(time.time() * 1000))
    forged = "sha256=" + "0" * 64
    assert post(gw, fake, event, signature=forged) == 401
    other = FakeMessenger(app_secret="someone-elses-secret")  # signed, but not with our app's secret
    raw = fake.notification(event)
    r = gw.post(f"/webhooks/messenger/{SENDER}", raw, auth=None, headers={"X-Hub-Signature-256": other.sign(raw)})
    assert r.status == 401 and r.error()["text"] == "Missing or invalid X-Hub-Signature-256"
    r = gw.post(f"/webhooks/messenger/{SENDER}", raw, auth=None)
    assert r.status == 401
    time.sleep(0.3)
    msg = get_message(gw, mid)
    assert msg["phase"] != "DONE" and msg["attempts"][0]["state"] == "ACCEPTED"
    assert post(gw, fake, event) == 200  # the genuine one is taken
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "FACEBOOK"


def test_verification_handshake(gw: Gateway) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    r = gw.get(f"/webhooks/messenger/{SENDER}?{urlencode(query)}", auth=None)
    assert r.status == 200 and r.text == "1158201444"
    wrong = gw.get(f"/webhooks/messenger/{SENDER}?{urlencode({**query, 'hub.verify_token': 'guess'})}", auth=None)
    assert wrong.status == 403
    assert gw.get(f"/webhooks/messenger/NoSuchPage?{urlencode(query)}", auth=None).status == 404


def test_a_message_from_a_user_is_pushed_to_the_inbound_url(gw: Gateway, fake: FakeMessenger,
                                                            receiver: Receiver) -> None:
    psid, _ = person(fake)
    mid = f"m_in_{uid()}"
    assert post(gw, fake, fake.user_message(psid, mid, "Where is my parcel?")) == 200
    deadline = time.monotonic() + 10
    while not (posts := [p for p in receiver.snapshot() if p.path == "/inbound" and mid in p.body.decode()]):
        assert time.monotonic() < deadline, receiver.snapshot()
        time.sleep(0.05)
    result = posts[0].json["results"][0]
    assert (result["from"], result["to"], result["integrationType"], result["messageId"]) == (
        psid, SENDER, "FACEBOOK", mid)
    assert result["message"] == {"type": "TEXT", "text": "Where is my parcel?"}
