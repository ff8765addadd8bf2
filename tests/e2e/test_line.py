"""LINE end to end: a real ``omnirelay serve`` with a ``[[line.channels]]`` whose ``base_url`` points at the fake
Messaging API (tests/integration/fakes/line.py, which refuses what LINE's reference refuses and answers a
retry key it accepted before with 409), and webhooks posted to ``/webhooks/line/{sender}`` signed the way
LINE signs them. The tutorial's failover, LINE then SMS: the SMS step is the sandbox (a number ending in 0 is
delivered).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.fakes.line import CHANNEL_SECRET, CHANNEL_TOKEN, FakeLine

from .conftest import ALADDIN_KEY, Gateway, GatewayPool
from .test_failover import DELIVERED_TO_HANDSET, NO_ERROR, get_message, short, wait_reports
from .test_webhooks import Receiver

SENDER = "MyLineChannel"
FLOW = [{"from": SENDER, "channel": "LINE"}, {"from": "InfoSMS", "channel": "SMS"}]


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

[[line.channels]]
sender = "{SENDER}"
channel_access_token = "{CHANNEL_TOKEN}"
channel_secret = "{CHANNEL_SECRET}"
base_url = "{base_url}"
account = "Aladdin"
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLine]:
    f = FakeLine()
    f.start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool, fake: FakeLine, receiver: Receiver) -> Gateway:
    gateway = module_gateways(config(fake.url, receiver.url("/inbound")))
    gateway.create_scenario(FLOW, default=True)
    return gateway


_numbers = iter(range(10_000))


def person(fake: FakeLine, *, friend: bool = True) -> tuple[str, str]:
    """A fresh (LINE user id, phone number ending in 0); ``friend``: the user added the account."""
    n = next(_numbers)
    user = f"U{n:032x}"
    if friend:
        fake.add_friend(user)
    return user, f"4178{n:06d}0"


def send(gw: Gateway, user: str, phone: str, **body: Any) -> str:
    payload = {"destinations": [{"to": {"lineUserKey": user, "phoneNumber": phone}}],
               "line": {"type": "TEXT", "text": "Your table is ready"}, "sms": {"text": "Your table is ready (SMS)"},
               **body}
    r = gw.post("/omni/1/advanced", payload)
    assert r.status == 200, r
    message_id: str = r.json["messages"][0]["messageId"]
    return message_id


def test_delivered_on_the_first_step(gw: Gateway, fake: FakeLine) -> None:
    user, phone = person(fake)
    mid = send(gw, user, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "LINE"
    assert short(report["status"]) == DELIVERED_TO_HANDSET and short(report["error"]) == NO_ERROR
    (push,) = fake.pushes_to(user)
    assert push.status == 200 and push.json == {"to": user, "messages": [{"type": "text",
                                                                        "text": "Your table is ready"}]}
    line = get_message(gw, mid)["attempts"][0]
    assert line["channel"] == "LINE" and line["providerId"] == push.answer["sentMessages"][0]["id"]
    assert fake.received_by(user) == [{"type": "text", "text": "Your table is ready"}]
    assert 'omnirelay_line_sends_total{result="delivered",sender="MyLineChannel"}' in gw.get("/metrics", auth=None).text


def test_not_a_user_fails_over_to_sms_and_the_report_says_so(gw: Gateway, fake: FakeLine) -> None:
    user, phone = person(fake, friend=False)
    mid = send(gw, user, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET
    line = get_message(gw, mid)["attempts"][0]
    assert (line["channel"], line["state"], line["error"]) == ("LINE", "REJECTED", "EC_UNKNOWN_USER")
    assert "LINE answered HTTP 400: Failed to send messages" in line["note"]


def test_a_push_whose_answer_was_lost_is_sent_again_and_shown_once(gw: Gateway, fake: FakeLine) -> None:
    user, phone = person(fake)
    fake.lose_next_answer()
    mid = send(gw, user, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "LINE" and short(report["status"]) == DELIVERED_TO_HANDSET
    pushes = fake.pushes_to(user)
    assert [p.status for p in pushes] == [200, 409] and pushes[0].retry_key == pushes[1].retry_key
    assert len(fake.received_by(user)) == 1
    line = get_message(gw, mid)["attempts"][0]
    assert line["providerId"] == pushes[0].answer["sentMessages"][0]["id"]


def test_throttled_is_pushed_again_within_the_validity(gw: Gateway, fake: FakeLine) -> None:
    user, phone = person(fake)
    fake.fail_next(429, {"message": "Too many requests"})
    mid = send(gw, user, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "LINE"
    assert [p.status for p in fake.pushes_to(user)] == [429, 200]
    assert len(fake.received_by(user)) == 1


def _inbound(receiver: Receiver, message_id: str) -> list[Any]:
    return [p for p in receiver.snapshot() if p.path == "/inbound" and message_id in p.body.decode()]


def test_a_forged_signature_gets_401_and_changes_nothing(gw: Gateway, fake: FakeLine, receiver: Receiver) -> None:
    user, _ = person(fake)
    message_id = str(10**17 + next(_numbers))
    raw = fake.webhook(fake.text_message(user, message_id, "I'd like to book a table"))
    other = FakeLine(secret="not-our-channel-secret")
    for headers in ({"X-Line-Signature": other.sign(raw)}, {"X-Line-Signature": "AAAA"}, {}):
        r = gw.post(f"/webhooks/line/{SENDER}", raw, auth=None, headers=headers)
        assert r.status == 401 and r.error()["text"] == "Missing or invalid X-Line-Signature"
    time.sleep(0.5)
    assert _inbound(receiver, message_id) == []
    r = gw.post(f"/webhooks/line/{SENDER}", raw, auth=None, headers={"X-Line-Signature": fake.sign(raw)})
    assert r.status == 200, r
    deadline = time.monotonic() + 10
    while not (posts := _inbound(receiver, message_id)):
        assert time.monotonic() < deadline, receiver.snapshot()
        time.sleep(0.05)
    result = posts[0].json["results"][0]
    assert (result["from"], result["to"], result["integrationType"], result["messageId"]) == (
        user, SENDER, "LINE", message_id)
    assert result["message"] == {"type": "TEXT", "text": "I'd like to book a table"}
    assert posts[0].report_id == f"inbound.line.{message_id}"


def post_events(gw: Gateway, fake: FakeLine, *events: dict[str, Any]) -> Any:
    raw = fake.webhook(*events)
    r = gw.post(f"/webhooks/line/{SENDER}", raw, auth=None, headers={"X-Line-Signature": fake.sign(raw)})
    assert r.status == 200, r
    return r.json


def test_after_an_unfollow_the_next_message_fails_over_until_a_follow(gw: Gateway, fake: FakeLine) -> None:
    user, phone = person(fake)
    fake.blocked.add(user)  # LINE answers pushes to them 200 and shows nothing
    assert post_events(gw, fake, fake.event("unfollow", user)) == {"inbound": 0, "blocked": 1}
    mid = send(gw, user, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET
    line = get_message(gw, mid)["attempts"][0]
    assert (line["channel"], line["state"], line["error"]) == ("LINE", "REJECTED", "EC_BLOCKED_USER")
    assert fake.pushes_to(user) == []  # not pushed at all

    fake.blocked.discard(user)
    assert post_events(gw, fake, fake.event("follow", user)) == {"inbound": 0, "blocked": 0}
    again = send(gw, user, phone)
    (report,) = wait_reports(gw, 1, messageId=again)
    assert report["channel"] == "LINE" and len(fake.received_by(user)) == 1


def test_a_forged_unfollow_changes_nothing(gw: Gateway, fake: FakeLine) -> None:
    user, phone = person(fake)
    raw = fake.webhook(fake.event("unfollow", user))
    r = gw.post(f"/webhooks/line/{SENDER}", raw, auth=None,
                headers={"X-Line-Signature": FakeLine(secret="guessed").sign(raw)})
    assert r.status == 401
    mid = send(gw, user, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "LINE" and len(fake.received_by(user)) == 1


def test_the_verification_request_and_webhook_metrics(gw: Gateway, fake: FakeLine) -> None:
    assert post_events(gw, fake) == {"inbound": 0, "blocked": 0}  # what LINE sends when the URL is set
    user, _ = person(fake)
    post_events(gw, fake, fake.event("follow", user))
    metrics = gw.get("/metrics", auth=None).text
    assert f'omnirelay_line_webhooks_total{{sender="{SENDER}",status="follow"}}' in metrics
    assert gw.post("/webhooks/line/NoSuchChannel", fake.webhook(), auth=None).status == 404
