"""Viber over the REST bot API end to end: a real ``omnirelay serve`` with a ``[[viber.bots]]`` whose ``base_url``
points at the fake bot API (tests/integration/fakes/viber.py), the webhook registered the way an operator
does it (``set_webhook`` at Viber, which checks the URL with a signed ``webhook`` callback), and the fake
posting signed callbacks to the gateway's ``/webhooks/viber/{sender}``.

The tutorial's failover is VIBER → SMS; the SMS step is the sandbox (a number ending in 0 is delivered).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.fakes.viber import FakeViber, sign

from .conftest import ALADDIN_KEY, Gateway, GatewayPool
from .test_failover import DELIVERED_TO_HANDSET, NO_ERROR, get_message, short, wait_message, wait_reports

TOKEN = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f"
SENDER = "ViberSender"
FLOW = [{"from": SENDER, "channel": "VIBER"}, {"from": "InfoSMS", "channel": "SMS"}]

#: Phone number -> Viber user id, as the operator configures them; the fake knows which are users.
SUBSCRIBED = {f"4179100000{i}0": f"subscribed-user-{i}==" for i in range(8)}
NOT_A_USER = {"41792000000": "no-such-user=="}
UNSUBSCRIBED = {"41793000000": "left-the-bot=="}


def config(base_url: str) -> str:
    users = {**SUBSCRIBED, **NOT_A_USER, **UNSUBSCRIBED}
    table = ", ".join(f'"{k}" = "{v}"' for k, v in users.items())
    return f"""
[[accounts]]
username = "Aladdin"
password = "open sesame"
api_keys = ["{ALADDIN_KEY}"]

[limits]
min_validity_seconds = 1

[[viber.bots]]
sender = "{SENDER}"
auth_token = "{TOKEN}"
sender_name = "Parcel Service"
base_url = "{base_url}"
users = {{ {table} }}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeViber]:
    f = FakeViber(TOKEN).start()
    for user in SUBSCRIBED.values():
        f.add_user(user)
    f.add_user(next(iter(UNSUBSCRIBED.values())), subscribed=False)
    yield f
    f.stop()


def set_webhook(fake: FakeViber, url: str) -> dict[str, Any]:
    """What the operator runs once: ``curl -H 'X-Viber-Auth-Token: …' -d '{"url": …}' …/pa/set_webhook``."""
    body = json.dumps({"url": url, "event_types": ["delivered", "seen", "failed", "subscribed", "unsubscribed"]})
    request = urllib.request.Request(f"{fake.url}/pa/set_webhook", body.encode(), method="POST",
                                     headers={"X-Viber-Auth-Token": TOKEN, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool, fake: FakeViber) -> Gateway:
    gateway = module_gateways(config(fake.url))
    gateway.create_scenario(FLOW, default=True)
    answer = set_webhook(fake, f"{gateway.url}/webhooks/viber/{SENDER}")
    assert answer["status"] == 0, answer  # the gateway answered Viber's signed "webhook" check with 200
    return gateway


_free = iter(SUBSCRIBED)


def send(gw: Gateway, to: str) -> str:
    payload = {"destinations": [{"to": {"phoneNumber": to}}], "viber": {"text": "Your parcel is on its way"},
               "sms": {"text": "Your parcel is on its way (SMS)"}}
    r = gw.post("/omni/1/advanced", payload)
    assert r.status == 200, r
    message_id: str = r.json["messages"][0]["messageId"]
    return message_id


def accepted_token(gw: Gateway, fake: FakeViber, message_id: str, to: str) -> int:
    """The message_token of the message's Viber send, once the gateway stored it as the attempt's providerId."""
    user = {**SUBSCRIBED, **NOT_A_USER, **UNSUBSCRIBED}[to]
    deadline = time.monotonic() + 10
    while not any(s.status == 0 for s in fake.sends_to(user)):
        assert time.monotonic() < deadline, f"no accepted send to {user}: {fake.sends_to(user)}"
        time.sleep(0.02)
    token = next(s.message_token for s in fake.sends_to(user) if s.status == 0)
    assert token is not None
    wait_message(gw, message_id, lambda m: any(a.get("providerId") == str(token) for a in m["attempts"]))
    return token


def test_delivered_reports_delivered_on_viber(gw: Gateway, fake: FakeViber) -> None:
    to = next(_free)
    mid = send(gw, to)
    token = accepted_token(gw, fake, mid, to)
    (sent,) = fake.sends_to(SUBSCRIBED[to])
    assert sent.json == {"receiver": SUBSCRIBED[to], "sender": {"name": "Parcel Service"}, "type": "text",
                         "text": "Your parcel is on its way"}
    assert fake.callback("delivered", token, user_id=SUBSCRIBED[to]) == 200
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "VIBER" and report["to"] == to
    assert short(report["status"]) == DELIVERED_TO_HANDSET and short(report["error"]) == NO_ERROR


def test_seen_marks_the_attempt_seen(gw: Gateway, fake: FakeViber) -> None:
    to = next(_free)
    mid = send(gw, to)
    token = accepted_token(gw, fake, mid, to)
    assert fake.callback("seen", token, user_id=SUBSCRIBED[to]) == 200
    assert fake.callback("delivered", token, user_id=SUBSCRIBED[to]) == 200  # Viber may send them out of order
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "VIBER" and short(report["status"]) == DELIVERED_TO_HANDSET
    assert wait_message(gw, mid)["attempts"][0]["state"] == "SEEN"


def test_not_a_viber_user_fails_over_to_sms_at_once(gw: Gateway, fake: FakeViber) -> None:
    to = next(iter(NOT_A_USER))
    mid = send(gw, to)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET
    viber = get_message(gw, mid)["attempts"][0]
    assert (viber["channel"], viber["state"], viber["error"]) == ("VIBER", "REJECTED", "EC_UNKNOWN_USER")
    assert "receiverNotRegistered" in viber["note"], viber
    assert [s.status for s in fake.sends_to(NOT_A_USER[to])] == [5]

    # capability memory: the next message to this number skips Viber (nothing more reaches the bot API)
    second = send(gw, to)
    (report,) = wait_reports(gw, 1, messageId=second)
    assert report["channel"] == "SMS"
    skipped = get_message(gw, second)["attempts"][0]
    assert (skipped["channel"], skipped["state"]) == ("VIBER", "SKIPPED") and "capability memory" in skipped["note"]
    assert len(fake.sends_to(NOT_A_USER[to])) == 1


def test_not_subscribed_and_unknown_numbers_fail_over_too(gw: Gateway, fake: FakeViber) -> None:
    unsubscribed = next(iter(UNSUBSCRIBED))
    unknown = "41794000000"  # no Viber user id configured: nothing is sent to Viber
    for to, why in ((unsubscribed, "receiverNotSubscribed"), (unknown, "no Viber user id")):
        for _ in range(2):  # neither is remembered: the second message tries Viber again
            mid = send(gw, to)
            (report,) = wait_reports(gw, 1, messageId=mid)
            assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET
            viber = get_message(gw, mid)["attempts"][0]
            assert (viber["state"], viber["error"]) == ("REJECTED", "EC_UNKNOWN_USER") and why in viber["note"], viber
    assert [s.status for s in fake.sends_to(UNSUBSCRIBED[unsubscribed])] == [6, 6]
    assert all(s.json["receiver"] != unknown for s in fake.sends)


def test_failed_callback_fails_over_to_sms(gw: Gateway, fake: FakeViber) -> None:
    to = next(_free)
    mid = send(gw, to)
    token = accepted_token(gw, fake, mid, to)
    assert fake.callback("failed", token, user_id=SUBSCRIBED[to], desc="user blocked the bot") == 200
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "SMS"
    viber = get_message(gw, mid)["attempts"][0]
    assert viber["state"] == "UNDELIVERABLE" and "user blocked the bot" in viber["note"], viber


def test_throttled_is_sent_again_then_delivered(gw: Gateway, fake: FakeViber) -> None:
    to = next(_free)
    fake.throttle(1)
    mid = send(gw, to)
    token = accepted_token(gw, fake, mid, to)
    assert [s.status for s in fake.sends_to(SUBSCRIBED[to])] == [12, 0]
    assert fake.callback("delivered", token, user_id=SUBSCRIBED[to]) == 200
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "VIBER"
    history = " | ".join(line["text"] for line in get_message(gw, mid)["history"])
    assert "tooManyRequests" in history, history


def test_forged_callback_is_refused_and_changes_nothing(gw: Gateway, fake: FakeViber) -> None:
    to = next(_free)
    mid = send(gw, to)
    token = accepted_token(gw, fake, mid, to)
    before = get_message(gw, mid)
    forged = json.dumps({"event": "failed", "timestamp": 1, "message_token": token, "desc": "x"}).encode()
    for headers in ({"X-Viber-Content-Signature": sign("not-the-token", forged)},
                    {"X-Viber-Content-Signature": sign(TOKEN, forged + b" ")},
                    {}):
        r = gw.post(f"/webhooks/viber/{SENDER}", forged, auth=None, headers=headers)
        assert r.status == 401, r
        assert r.error()["messageId"] == "UNAUTHORIZED"
    time.sleep(0.5)  # time enough for an engine cycle, had anything been recorded
    after = get_message(gw, mid)
    assert after["phase"] == before["phase"] != "DONE"
    assert after["attempts"] == before["attempts"] and after["history"] == before["history"]
    assert fake.callback("delivered", token, user_id=SUBSCRIBED[to]) == 200  # the genuine one still counts
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "VIBER"


def test_subscription_callbacks_are_acknowledged(gw: Gateway, fake: FakeViber) -> None:
    user = {"id": "new-user==", "name": "Jane", "country": "HR", "language": "hr", "api_version": 10}
    assert fake.callback("subscribed", 4912661846655238145, user=user) == 200
    assert fake.callback("unsubscribed", 4912661846655238146, user_id="new-user==") == 200
    metrics = gw.get("/metrics", auth=None).text
    assert f'omnirelay_viber_callbacks_total{{event="subscribed",sender="{SENDER}"}} 1.0' in metrics
    assert f'omnirelay_viber_callbacks_total{{event="webhook",sender="{SENDER}"}} 1.0' in metrics
    r = gw.post("/webhooks/viber/NoSuchBot", b"{}", auth=None, headers={"X-Viber-Content-Signature": "00"})
    assert r.status == 404


# --- kill -9 in the middle ---------------------------------------------------------------------------------


def test_kill_9_keeps_answered_tokens_and_never_sends_twice(make_gateway: Callable[..., Gateway]) -> None:
    """One message's send was answered (its token stored), another's was still on the wire when the gateway died:
    after the restart the first one's callback finds it, and the second is not sent again but fails over to
    SMS when its validity runs out."""
    fake = FakeViber(TOKEN).start()
    try:
        phones = list(SUBSCRIBED)[-2:]
        answered_user, held_user = (SUBSCRIBED[p] for p in phones)
        for user in (answered_user, held_user):
            fake.add_user(user)
        gw = make_gateway(config(fake.url))
        gw.create_scenario(FLOW, default=True)
        assert set_webhook(fake, f"{gw.url}/webhooks/viber/{SENDER}")["status"] == 0
        release = fake.hold(held_user)
        validity_s = 6
        r = gw.post("/omni/1/advanced", {
            "destinations": [{"to": {"phoneNumber": p}} for p in phones],
            "viber": {"text": "Your table is ready", "validityPeriod": validity_s, "validityPeriodTimeUnit": "SECONDS"},
            "sms": {"text": "Your table is ready (SMS)"},
        })
        assert r.status == 200, r
        answered_mid, held_mid = (m["messageId"] for m in r.json["messages"])
        token = accepted_token(gw, fake, answered_mid, phones[0])
        deadline = time.monotonic() + 10
        while held_user not in fake.waiting:
            assert time.monotonic() < deadline, "the second send never reached the fake"
            time.sleep(0.02)
        gw.kill9()
        release.set()  # Viber answers the held send to a connection nobody reads any more
        assert fake.callback("delivered", token, user_id=answered_user) == 0  # the gateway is down
        gw.start()
        assert fake.callback("delivered", token, user_id=answered_user) == 200  # Viber's retry after the restart
        (report,) = wait_reports(gw, 1, messageId=answered_mid)
        assert report["channel"] == "VIBER" and short(report["status"]) == DELIVERED_TO_HANDSET
        (late,) = wait_reports(gw, 1, timeout=validity_s + 20, messageId=held_mid)
        assert late["channel"] == "SMS" and short(late["status"]) == DELIVERED_TO_HANDSET, late
        assert len(fake.sends_to(held_user)) == 1 and len(fake.sends_to(answered_user)) == 1  # nothing sent twice
    finally:
        fake.stop()
