"""Push over FCM HTTP v1 end to end: a real ``omnirelay serve`` with a ``[[push.apps]]`` whose service-account
key file names the fake token endpoint (``token_uri``) and whose ``base_url`` is the fake FCM
(tests/integration/fakes/fcm.py), which verifies every JWT assertion and bearer token and validates every
message against FCM's published v1 document.

The tutorial's failover is PUSH → SMS: destinations carry a ``pushRegistrationId`` (the device's FCM token)
and a ``phoneNumber``; the SMS step is the sandbox (a number ending in 0 is delivered).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.fakes.fcm import FakeFcm, ServiceAccountKey, new_key

from .conftest import ALADDIN_KEY, Gateway, GatewayPool
from .test_failover import DELIVERED_TO_HANDSET, NO_ERROR, get_message, short, wait_message, wait_reports

PROJECT = "omnirelay-e2e"
APP = "PushApp"
FLOW = [{"from": APP, "channel": "PUSH"}, {"from": "InfoSMS", "channel": "SMS"}]


def config(base_url: str, key_file: Path) -> str:
    return f"""
[[accounts]]
username = "Aladdin"
password = "open sesame"
api_keys = ["{ALADDIN_KEY}"]

[[push.apps]]
sender = "{APP}"
service_account_file = "{key_file}"
base_url = "{base_url}"
"""


@pytest.fixture(scope="module")
def key() -> ServiceAccountKey:
    return new_key(PROJECT)


@pytest.fixture(scope="module")
def fake(key: ServiceAccountKey) -> Iterator[FakeFcm]:
    f = FakeFcm().start()
    f.add_key(key)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool, fake: FakeFcm, key: ServiceAccountKey,
       tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    key_file = key.write(tmp_path_factory.mktemp("fcm") / "service-account.json", fake.token_url)
    gateway = module_gateways(config(fake.url, key_file))
    gateway.create_scenario(FLOW, default=True)
    return gateway


_n = itertools.count()


def destination() -> tuple[str, str]:
    """A fresh (device token, phone number ending in 0)."""
    n = next(_n)
    return f"dGVzdC1kZXZpY2Ut{n:04d}:APA91bF{n:04d}xQ2kLm9", f"4179500{n:03d}0"


def send(gw: Gateway, device: str, phone: str) -> str:
    payload = {
        "destinations": [{"to": {"pushRegistrationId": device, "phoneNumber": phone}}],
        "push": {"text": "Your parcel arrives today", "notificationOptions": {"title": "Parcel"},
                 "customPayload": {"orderId": 42}},
        "sms": {"text": "Your parcel arrives today (SMS)"},
    }
    r = gw.post("/omni/1/advanced", payload)
    assert r.status == 200, r
    message_id: str = r.json["messages"][0]["messageId"]
    return message_id


def test_accepted_by_fcm_reports_delivered_on_push(gw: Gateway, fake: FakeFcm) -> None:
    device, phone = destination()
    mid = send(gw, device, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "PUSH" and short(report["status"]) == DELIVERED_TO_HANDSET
    assert short(report["error"]) == NO_ERROR
    (sent,) = fake.sends_to(device)
    assert sent.status == 200
    message = sent.json["message"]
    assert message["notification"] == {"title": "Parcel", "body": "Your parcel arrives today"}
    assert message["data"] == {"orderId": "42"}
    push = get_message(gw, mid)["attempts"][0]
    assert (push["channel"], push["providerId"]) == ("PUSH", sent.name)
    assert all(r.status == 200 for r in fake.token_requests)


def test_unregistered_device_fails_over_to_sms(gw: Gateway, fake: FakeFcm) -> None:
    device, phone = destination()
    fake.unregister(device)
    mid = send(gw, device, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "SMS" and report["to"] == phone
    assert short(report["status"]) == DELIVERED_TO_HANDSET
    push = get_message(gw, mid)["attempts"][0]
    assert (push["channel"], push["state"], push["error"]) == ("PUSH", "REJECTED", "EC_REGISTRATION_ID_DISABLED")
    assert "UNREGISTERED" in push["note"], push
    assert [s.status for s in fake.sends_to(device)] == [404]


def test_throttled_is_sent_again_then_delivered(gw: Gateway, fake: FakeFcm) -> None:
    device, phone = destination()
    fake.fail_next(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded", headers={"Retry-After": "1"})
    mid = send(gw, device, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "PUSH" and short(report["status"]) == DELIVERED_TO_HANDSET
    assert [s.status for s in fake.sends_to(device)] == [429, 200]


def test_a_revoked_token_is_renewed_without_failing_over(gw: Gateway, fake: FakeFcm) -> None:
    device, phone = destination()
    fake.revoke_tokens()
    mid = send(gw, device, phone)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "PUSH"
    assert [s.status for s in fake.sends_to(device)] == [401, 200]


def test_a_missing_key_file_stops_the_start_with_a_clear_error(module_gateways: GatewayPool, fake: FakeFcm,
                                                               tmp_path: Path) -> None:
    gateway = module_gateways(config(fake.url, tmp_path / "nowhere.json"), start=False)
    result = gateway.cli("serve", check=False, timeout=30)
    assert result.returncode != 0
    assert "push: service account key" in result.stderr and "does not exist" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_kill_9_while_one_push_is_on_the_wire(make_gateway: Callable[..., Gateway], key: ServiceAccountKey,
                                              tmp_path: Path) -> None:
    """One push was answered (delivered, stored), another was still on the wire when the gateway died: after the
    restart the first stays delivered, and the second is not sent again but fails over to SMS when its validity
    runs out."""
    fake = FakeFcm().start()
    try:
        fake.add_key(key)
        gw = make_gateway(config(fake.url, key.write(tmp_path / "key.json", fake.token_url))
                          + "\n[limits]\nmin_validity_seconds = 1\n")
        gw.create_scenario(FLOW, default=True)
        (answered, answered_phone), (held, held_phone) = destination(), destination()
        release = fake.hold(held)
        validity_s = 6
        r = gw.post("/omni/1/advanced", {
            "destinations": [{"to": {"pushRegistrationId": d, "phoneNumber": p}}
                             for d, p in ((answered, answered_phone), (held, held_phone))],
            "push": {"text": "Your table is ready", "validityPeriod": validity_s, "validityPeriodTimeUnit": "SECONDS"},
            "sms": {"text": "Your table is ready (SMS)"},
        })
        assert r.status == 200, r
        answered_mid, held_mid = (m["messageId"] for m in r.json["messages"])
        wait_message(gw, answered_mid)  # delivered and stored while the other push is still unanswered
        deadline = time.monotonic() + 10
        while held not in fake.waiting:
            assert time.monotonic() < deadline, "the second push never reached the fake"
            time.sleep(0.02)
        gw.kill9()
        release.set()
        gw.start()
        (report,) = wait_reports(gw, 1, messageId=answered_mid)
        assert report["channel"] == "PUSH" and short(report["status"]) == DELIVERED_TO_HANDSET
        (late,) = wait_reports(gw, 1, timeout=validity_s + 20, messageId=held_mid)
        assert late["channel"] == "SMS" and short(late["status"]) == DELIVERED_TO_HANDSET, late
        assert len(fake.sends_to(held)) == 1 and len(fake.sends_to(answered)) == 1  # nothing sent twice
    finally:
        fake.stop()
