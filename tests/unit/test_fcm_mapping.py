"""The pure parts of the FCM connector: the message, the error verdicts and the token assertion."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from omnirelay.connectors.fcm.connector import (
    SCOPE,
    ServiceAccount,
    answer_to_result,
    assertion,
    build_message,
    classify,
    retry_after,
)
from omnirelay.connectors.http import ContentError


def test_the_time_to_live_is_the_validity_capped_at_four_weeks() -> None:
    message = build_message("tok", {"text": "hi"}, 90 * 86400)["message"]
    assert message["android"]["ttl"] == f"{28 * 86400}s" and message["webpush"]["headers"]["TTL"] == str(28 * 86400)


@pytest.mark.parametrize("key", ["from", "message_type", "google.sent_time", "GCM.x", "notification"])
def test_reserved_data_keys_are_refused(key: str) -> None:
    with pytest.raises(ContentError, match="reserves"):
        build_message("tok", {"customPayload": {key: "x"}}, 60)


def test_verdicts() -> None:
    assert classify(404, "UNREGISTERED", "NOT_FOUND", "").error == "EC_REGISTRATION_ID_DISABLED"
    assert classify(404, None, "NOT_FOUND", "").error == "EC_REGISTRATION_ID_DISABLED"
    assert classify(400, "INVALID_ARGUMENT", None, "bad data").error == "EC_INVALID_PUSH_PAYLOAD"
    assert classify(429, None, None, None).outcome == "RETRY"
    assert classify(502, None, None, None).outcome == "RETRY"
    assert classify(403, None, None, None).error == "EC_INVALID_FCM_AUTH_DATA"
    assert classify(409, None, None, None).error == "EC_BAD_REQUEST"


def test_retry_after() -> None:
    assert retry_after(1, "12") == 12.0
    assert retry_after(1, "3600") == 60.0  # capped
    assert retry_after(3, "Wed, 21 Oct 2015 07:28:00 GMT") == 4.0  # a date: the backoff
    assert retry_after(10) == 60.0


def test_an_error_body_that_is_not_googles() -> None:
    (report,) = answer_to_result(503, b"<html>down</html>", tries=2).reports
    assert (report.outcome, report.error, report.after_s) == ("RETRY", "EC_PROVIDER_INTERNAL_ERROR", 2.0)
    (report,) = answer_to_result(200, b"{}").reports
    assert report.outcome == "REJECTED"


def test_the_assertion_is_signed_rs256_with_the_claims_google_wants() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    account = ServiceAccount(client_email="a@p.iam.gserviceaccount.com", private_key=pem, private_key_id="k1")
    now = time.time()
    signed = assertion(account, "https://oauth2.example/token", now)
    assert jwt.get_unverified_header(signed)["kid"] == "k1"
    claims = jwt.decode(signed, private.public_key(), algorithms=["RS256"], audience="https://oauth2.example/token")
    assert claims == {"iss": account.client_email, "scope": SCOPE, "aud": "https://oauth2.example/token",
                      "iat": int(now), "exp": int(now) + 3600}
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(signed, other.public_key(), algorithms=["RS256"], audience="https://oauth2.example/token")
