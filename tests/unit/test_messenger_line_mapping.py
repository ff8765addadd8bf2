"""The pure parts of the Messenger and LINE connectors: Graph error codes and LINE answers to outcomes, and
the webhook signature checks (no network, no store)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from omnirelay.connectors.http import ContentError
from omnirelay.connectors.line import connector as line
from omnirelay.connectors.line import webhooks as line_webhooks
from omnirelay.connectors.messenger import connector as messenger
from omnirelay.connectors.messenger import webhooks as messenger_webhooks


@pytest.mark.parametrize(("code", "subcode", "status", "outcome", "error", "not_a_user"), [
    (100, 2018001, 400, "REJECTED", "EC_UNKNOWN_USER", True),  # no matching user: the subcode decides
    (10, 2018001, 400, "REJECTED", "EC_UNKNOWN_USER", True),
    (551, 1545041, 400, "REJECTED", "EC_UNKNOWN_USER", True),
    (551, None, 400, "REJECTED", "EC_UNKNOWN_USER", True),
    (10, 2018278, 400, "REJECTED", "EC_NO_SESSION", False),  # outside the 24-hour window
    (10, None, 403, "REJECTED", "EC_CONFIGURATION_ERROR", False),  # permission
    (190, 463, 400, "REJECTED", "EC_CONFIGURATION_ERROR", False),  # token expired
    (230, None, 403, "REJECTED", "EC_CONFIGURATION_ERROR", False),
    (299, None, 403, "REJECTED", "EC_CONFIGURATION_ERROR", False),  # 200-299: permissions
    (613, None, 400, "RETRY", "EC_TOO_MANY_REQUESTS", False),
    (4, None, 403, "RETRY", "EC_TOO_MANY_REQUESTS", False),
    (32, None, 403, "RETRY", "EC_TOO_MANY_REQUESTS", False),
    (2, None, 500, "RETRY", "EC_PROVIDER_INTERNAL_ERROR", False),
    (None, None, 503, "RETRY", "EC_PROVIDER_INTERNAL_ERROR", False),
    (None, None, 401, "REJECTED", "EC_CONFIGURATION_ERROR", False),
    (12345, None, 400, "REJECTED", "EC_BAD_REQUEST", False),
])
def test_graph_errors_map_to_outcomes(code: int | None, subcode: int | None, status: int, outcome: str, error: str,
                                      not_a_user: bool) -> None:
    verdict = messenger.classify(code, subcode, status)
    assert (verdict.outcome, verdict.error, verdict.not_a_user) == (outcome, error, not_a_user)


@pytest.mark.parametrize(("status", "text", "outcome", "error", "not_a_user"), [
    (400, "Failed to send messages", "REJECTED", "EC_UNKNOWN_USER", True),
    (400, "The user hasn't added the LINE Official Account as a friend.", "REJECTED", "EC_UNKNOWN_USER", True),
    (400, "The request body has 2 error(s)", "REJECTED", "EC_BAD_REQUEST", False),
    (401, "Authentication failed", "REJECTED", "EC_CONFIGURATION_ERROR", False),
    (403, "Access to this API is not available for your account", "REJECTED", "EC_CONFIGURATION_ERROR", False),
    (429, "Too many requests", "RETRY", "EC_TOO_MANY_REQUESTS", False),
    (429, "You have reached your monthly limit.", "REJECTED", "EC_ACCOUNT_ISSUE", False),
    (500, "Internal server error", "RETRY", "EC_PROVIDER_INTERNAL_ERROR", False),
])
def test_line_answers_map_to_outcomes(status: int, text: str, outcome: str, error: str, not_a_user: bool) -> None:
    verdict = line.classify(status, text)
    assert (verdict.outcome, verdict.error, verdict.not_a_user) == (outcome, error, not_a_user)


def test_a_409_is_the_earlier_accepted_push() -> None:
    body = b'{"message":"The retry key is already accepted","sentMessages":[{"id":"461230966842064897"}]}'
    result = line.answer_to_result(409, body, {"x-line-accepted-request-id": "abc"})
    assert result.provider_id == "461230966842064897" and result.reports[0].outcome == "DELIVERED"
    bare = line.answer_to_result(409, b'{"message":"The retry key is already accepted"}',
                                 {"X-Line-Accepted-Request-Id": "abc"})
    assert bare.provider_id == "abc" and bare.reports[0].outcome == "DELIVERED"


def test_line_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"destination":"U1","events":[]}'
    expected = base64.b64encode(hmac.new(b"secret", body, hashlib.sha256).digest()).decode()
    assert line_webhooks.signature_ok("secret", body, expected)
    assert not line_webhooks.signature_ok("secret", body + b" ", expected)  # any byte changed
    assert not line_webhooks.signature_ok("other", body, expected)
    assert not line_webhooks.signature_ok("secret", body, None)
    assert not line_webhooks.signature_ok("secret", body, "sha256=" + hmac.new(b"secret", body, "sha256").hexdigest())


def test_messenger_signature_is_metas_x_hub_signature_256() -> None:
    body = b'{"object":"page","entry":[]}'
    expected = "sha256=" + hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    assert messenger_webhooks.signature_ok("app-secret", body, expected)
    assert not messenger_webhooks.signature_ok("app-secret", body[:-1], expected)


def test_line_counts_text_as_utf16_units() -> None:
    assert line.build_messages({"text": "a" * 5000}) == [{"type": "text", "text": "a" * 5000}]
    assert line.build_messages({"text": "\U0001f600" * 2500})[0]["text"] == "\U0001f600" * 2500
    with pytest.raises(ContentError, match="an emoji counts 2"):
        line.build_messages({"text": "\U0001f600" * 2501})
