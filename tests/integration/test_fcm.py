"""The FCM HTTP v1 connector against the fake token endpoint and send endpoint (tests/integration/fakes/fcm.py).

The fake verifies each token request's JWT assertion against the service account's public key and its grant
type, takes only the access tokens it issued, and validates each send against the published FCM v1 OpenAPI
document (unknown fields refused, as Google's parser does). The first tests prove it refuses what it should.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import msgspec
import pytest

from omnirelay.config import PushAppConfig, PushConfig
from omnirelay.connectors.fcm.connector import GRANT_TYPE, FcmPush, assertion, build_message, load_service_account
from omnirelay.domain import catalogue
from omnirelay.domain.delivery import Submission
from omnirelay.metrics import Metrics
from tests.integration.fakes.fcm import FakeFcm, ServiceAccountKey, new_key, send_errors

PROJECT = "omnirelay-test-5ae1"
DEVICE = "fGqVnY2lSwq3Zk0aB7xP1c:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx1pm8QvNkPC3vRAJ2l7Y7nGgk9Kd3"

PUSH = {
    "text": "Your parcel arrives today",
    "notificationOptions": {"title": "Parcel", "soundEnabled": True, "soundName": "bell", "badge": 1,
                            "vibrationEnabled": True, "category": "mm_accept_decline"},
    "customPayload": {"orderId": "42", "items": 3, "express": True, "tags": ["a", "b"]},
}


@pytest.fixture(scope="module")
def key() -> ServiceAccountKey:
    return new_key(PROJECT)


@pytest.fixture
def fake(key: ServiceAccountKey) -> Iterator[FakeFcm]:
    f = FakeFcm().start()
    f.add_key(key)
    yield f
    f.stop()


def app_config(tmp_path: Path, fake: FakeFcm, key: ServiceAccountKey, **overrides: Any) -> PushAppConfig:
    path = key.write(tmp_path / f"{key.key_id}.json", fake.token_url)
    return PushAppConfig(sender="PushApp", service_account_file=str(path), base_url=fake.url, **overrides)


@pytest.fixture
async def push(tmp_path: Path, fake: FakeFcm, key: ServiceAccountKey) -> AsyncIterator[FcmPush]:
    channel = FcmPush(PushConfig([app_config(tmp_path, fake, key)]), Metrics())
    yield channel
    await channel.close()


def submission(push: dict[str, Any], to: str = DEVICE, tries: int = 1, n: int = 1) -> Submission:
    return Submission(
        message=n,
        step=0,
        account_id=1,
        message_id=f"m-{n}",
        channel="PUSH",
        sender="PushApp",
        address=to,
        content={"push": push},
        validity_s=120.0,
        tries=tries,
    )


# --- the fake does refuse ----------------------------------------------------------------------------------


def test_the_document_refuses_what_fcm_refuses() -> None:
    good = build_message(DEVICE, PUSH, 60)
    assert send_errors(good) == []
    assert send_errors({"message": {**good["message"], "bogus": 1}})  # unknown field
    assert send_errors({"message": {**good["message"], "data": {"n": 3}}})  # data values are strings
    assert send_errors({"message": {**good["message"], "topic": "news"}})  # two targets
    android = {**good["message"]["android"], "priority": "URGENT"}  # the document's enum: NORMAL, HIGH
    assert send_errors({"message": {**good["message"], "android": android}})  # not in the enum


async def test_the_fake_checks_grant_type_signature_and_bearer(
        tmp_path: Path, fake: FakeFcm, key: ServiceAccountKey) -> None:
    account = load_service_account(str(key.write(tmp_path / "key.json", fake.token_url)))
    impostor = new_key(PROJECT)  # the same e-mail and key id, another private key
    forged = msgspec.structs.replace(account, private_key=impostor.private_pem)
    now = time.time()
    async with aiohttp.ClientSession() as session:
        async def token(grant_type: str, signed: str) -> tuple[int, dict[str, Any]]:
            async with session.post(fake.token_url, data={"grant_type": grant_type, "assertion": signed}) as r:
                return r.status, await r.json()

        good = assertion(account, fake.token_url, now)
        status, answer = await token("client_credentials", good)
        assert (status, answer["error"]) == (400, "unsupported_grant_type")
        status, answer = await token(GRANT_TYPE, assertion(forged, fake.token_url, now))
        assert (status, answer["error_description"]) == (400, "Invalid JWT Signature.")
        status, answer = await token(GRANT_TYPE, assertion(account, "https://elsewhere.example/token", now))
        assert (status, answer["error"]) == (400, "invalid_grant")
        status, answer = await token(GRANT_TYPE, good)
        assert status == 200 and answer["access_token"]
        url = f"{fake.url}/v1/projects/{PROJECT}/messages:send"
        body = build_message(DEVICE, PUSH, 60)
        async with session.post(url, json=body, headers={"Authorization": "Bearer ya29.made-up"}) as r:
            assert r.status == 401
        async with session.post(url, json=body, headers={"Authorization": f"Bearer {answer['access_token']}"}) as r:
            assert r.status == 200


# --- mapping and tokens ------------------------------------------------------------------------------------


async def test_a_push_is_sent_and_counts_as_delivered(push: FcmPush, fake: FakeFcm, key: ServiceAccountKey) -> None:
    (result,) = await push.submit([submission(PUSH)])
    (sent,) = fake.sends
    assert sent.status == 200 and sent.path == f"/v1/projects/{PROJECT}/messages:send"
    assert result.provider_id == sent.name and result.provider_id.startswith(f"projects/{PROJECT}/messages/")
    (report,) = result.reports
    assert (report.outcome, report.after_s) == ("DELIVERED", 0.0)
    message = sent.json["message"]
    assert message["token"] == DEVICE
    assert message["notification"] == {"title": "Parcel", "body": "Your parcel arrives today"}
    assert message["data"] == {"orderId": "42", "items": "3", "express": "true", "tags": '["a","b"]'}
    assert message["android"] == {"ttl": "120s", "notification": {
        "sound": "bell", "defaultVibrateTimings": True, "notificationCount": 1, "clickAction": "mm_accept_decline"}}
    assert message["apns"]["payload"] == {"aps": {"sound": "bell", "badge": 1, "category": "mm_accept_decline"}}
    assert int(message["apns"]["headers"]["apns-expiration"]) > time.time()
    assert message["webpush"] == {"headers": {"TTL": "120"}}
    (request,) = fake.token_requests
    assert request.status == 200 and request.claims is not None
    assert request.claims["iss"] == key.email and request.claims["aud"] == fake.token_url
    assert request.claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert jwt.get_unverified_header(request.form["assertion"]) == {"alg": "RS256", "typ": "JWT", "kid": key.key_id}


async def test_data_only_push(push: FcmPush, fake: FakeFcm) -> None:
    (result,) = await push.submit([submission({"customPayload": {"refresh": "1"}})])
    assert result.reports[0].outcome == "DELIVERED"
    assert "notification" not in fake.sends[0].json["message"]


async def test_a_silent_push_hands_its_text_to_the_app(push: FcmPush, fake: FakeFcm) -> None:
    content = {"text": "3 new offers", "notificationOptions": {"title": "Offers", "isSilent": True, "badge": 3},
               "customPayload": {"offers": [1, 2, 3]}}
    (result,) = await push.submit([submission(content)])
    assert result.reports[0].outcome == "DELIVERED"
    message = fake.sends[0].json["message"]
    assert "notification" not in message and "notification" not in message["android"]
    assert message["data"] == {"title": "Offers", "body": "3 new offers", "offers": "[1,2,3]"}
    assert message["apns"]["payload"] == {"aps": {"content-available": 1}}
    assert message["apns"]["headers"]["apns-push-type"] == "background"


async def test_sound_off(push: FcmPush, fake: FakeFcm) -> None:
    await push.submit([submission({"text": "quiet", "notificationOptions": {"soundEnabled": False,
                                                                          "soundName": "bell"}})])
    message = fake.sends[0].json["message"]
    assert "notification" not in message["android"] and "payload" not in message["apns"]


async def test_one_token_serves_a_batch_and_later_sends(push: FcmPush, fake: FakeFcm) -> None:
    results = await push.submit([submission(PUSH, n=i) for i in range(20)])
    await push.submit([submission(PUSH, n=99)])
    assert [r.reports[0].outcome for r in results] == ["DELIVERED"] * 20
    assert len({r.provider_id for r in results}) == 20
    assert len(fake.token_requests) == 1
    assert len({s.headers["Authorization"] for s in fake.sends}) == 1


async def test_a_token_near_its_expiry_is_renewed(push: FcmPush, fake: FakeFcm) -> None:
    fake.token_lifetime_s = 30  # within the renewal margin: every send needs a fresh one
    await push.submit([submission(PUSH)])
    await push.submit([submission(PUSH, n=2)])
    assert [r.status for r in fake.token_requests] == [200, 200]
    first, second = fake.sends
    assert first.headers["Authorization"] != second.headers["Authorization"]
    assert (first.status, second.status) == (200, 200)


async def test_a_refused_token_is_renewed_and_the_message_sent_again(push: FcmPush, fake: FakeFcm) -> None:
    await push.submit([submission(PUSH)])
    fake.revoke_tokens()
    (result,) = await push.submit([submission(PUSH, n=2)])
    assert result.reports[0].outcome == "DELIVERED"
    assert [s.status for s in fake.sends] == [200, 401, 200]
    assert len(fake.token_requests) == 2


async def test_a_key_the_endpoint_does_not_take_is_permanent(tmp_path: Path, fake: FakeFcm) -> None:
    stranger = new_key(PROJECT, "stranger")  # never added to the fake
    channel = FcmPush(PushConfig([app_config(tmp_path, fake, stranger)]))
    try:
        (result,) = await channel.submit([submission(PUSH)])
    finally:
        await channel.close()
    (report,) = result.reports
    assert (report.outcome, report.error) == ("REJECTED", "EC_INVALID_FCM_AUTH_DATA")
    assert "unknown issuer" in (report.detail or "") and fake.sends == []


async def test_a_project_the_key_does_not_belong_to(tmp_path: Path, fake: FakeFcm, key: ServiceAccountKey) -> None:
    channel = FcmPush(PushConfig([app_config(tmp_path, fake, key, project_id="someone-else")]))
    try:
        (result,) = await channel.submit([submission(PUSH)])
    finally:
        await channel.close()
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_INVALID_FCM_AUTH_DATA")
    assert "PERMISSION_DENIED" in (result.reports[0].detail or "")


async def test_an_unreachable_token_endpoint_is_retried(tmp_path: Path, fake: FakeFcm, key: ServiceAccountKey) -> None:
    channel = FcmPush(PushConfig([app_config(tmp_path, fake, key, token_url="http://127.0.0.1:9/token")]))
    try:
        (result,) = await channel.submit([submission(PUSH, tries=3)])
    finally:
        await channel.close()
    assert (result.reports[0].outcome, result.reports[0].error, result.reports[0].after_s) == (
        "RETRY", "EC_PUSH_CLOUD_TEMP_UNAVAILABLE", 4.0)


# --- errors ------------------------------------------------------------------------------------------------


async def test_unregistered_fails_over_at_once(push: FcmPush, fake: FakeFcm) -> None:
    fake.unregister(DEVICE)
    (result,) = await push.submit([submission(PUSH)])
    assert fake.sends[0].status == 404
    (report,) = result.reports
    assert (report.outcome, report.error, report.after_s) == ("REJECTED", "EC_REGISTRATION_ID_DISABLED", 0.0)
    assert "UNREGISTERED" in (report.detail or "")


async def test_not_a_registration_token(push: FcmPush, fake: FakeFcm) -> None:
    fake.fail_next(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT",
                   "The registration token is not a valid FCM registration token")
    (result,) = await push.submit([submission(PUSH)])
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_NO_REGISTRATION_ID_FOUND")


async def test_a_phone_number_is_no_registration_token(push: FcmPush, fake: FakeFcm) -> None:
    (result,) = await push.submit([submission(PUSH, to="41793026727")])
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_NO_REGISTRATION_ID_FOUND")
    assert fake.sends == []


@pytest.mark.parametrize(
    ("content", "why"),
    [({"customPayload": {"from": "me"}}, "reserves"), ({}, "nothing to send")],
)
async def test_content_fcm_would_refuse_is_refused_without_a_request(
        content: dict[str, Any], why: str, push: FcmPush, fake: FakeFcm) -> None:
    (result,) = await push.submit([submission(content)])
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_INVALID_PUSH_PAYLOAD")
    assert why in (result.reports[0].detail or "") and fake.sends == []


async def test_quota_exceeded_waits_as_long_as_fcm_says(push: FcmPush, fake: FakeFcm) -> None:
    fake.fail_next(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded", headers={"Retry-After": "7"})
    (result,) = await push.submit([submission(PUSH)])
    assert (result.reports[0].outcome, result.reports[0].error, result.reports[0].after_s) == (
        "RETRY", "EC_TOO_MANY_REQUESTS", 7.0)


@pytest.mark.parametrize(
    ("http_status", "status", "code", "error"),
    [(503, "UNAVAILABLE", "UNAVAILABLE", "EC_PUSH_CLOUD_TEMP_UNAVAILABLE"),
     (500, "INTERNAL", "INTERNAL", "EC_PROVIDER_INTERNAL_ERROR")],
)
async def test_server_trouble_is_retried_with_backoff(
        http_status: int, status: str, code: str, error: str, push: FcmPush, fake: FakeFcm) -> None:
    fake.fail_next(http_status, status, code, "try later")
    (result,) = await push.submit([submission(PUSH, tries=3)])
    assert (result.reports[0].outcome, result.reports[0].error, result.reports[0].after_s) == ("RETRY", error, 4.0)


def test_every_error_name_is_in_the_catalogue() -> None:
    from omnirelay.connectors.fcm import connector as fcm

    verdicts = [*fcm.VERDICTS.values(), *fcm.STATUS_VERDICTS.values(), fcm.classify(418, None, None, None)]
    for verdict in verdicts:
        assert catalogue.is_error_name(verdict.error), verdict


async def test_metrics(tmp_path: Path, fake: FakeFcm, key: ServiceAccountKey) -> None:
    metrics = Metrics()
    channel = FcmPush(PushConfig([app_config(tmp_path, fake, key)]), metrics)
    fake.unregister("dead:token")
    try:
        await channel.submit([submission(PUSH), submission(PUSH, to="dead:token", n=2)])
    finally:
        await channel.close()
    text = metrics.render().decode()
    assert 'omnirelay_fcm_sends_total{app="PushApp",result="delivered"} 1.0' in text
    assert 'omnirelay_fcm_sends_total{app="PushApp",result="rejected"} 1.0' in text
    assert 'omnirelay_fcm_token_requests_total{app="PushApp",result="ok"} 1.0' in text


def test_a_key_file_that_is_not_one(tmp_path: Path) -> None:
    bad = tmp_path / "key.json"
    bad.write_text(json.dumps({"type": "authorized_user", "client_email": "a", "private_key": "b"}))
    with pytest.raises(ValueError, match="not 'service_account'"):
        FcmPush(PushConfig([PushAppConfig(sender="P", service_account_file=str(bad), project_id="p")]))
    with pytest.raises(ValueError, match="does not exist"):
        FcmPush(PushConfig([PushAppConfig(sender="P", service_account_file=str(tmp_path / "none.json"))]))
