"""The pure parts of the Viber connector: answers, callbacks and their signature."""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from omnirelay.config import ViberBotConfig
from omnirelay.connectors.viber.connector import answer_to_result, load_users
from omnirelay.connectors.viber.webhooks import Callback, callback_receipt, sign, signature_ok
from omnirelay.domain.delivery import Receipt

TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
BIG = 5741311803571721087  # more than a JSON double holds exactly


def test_the_signature_is_the_hex_hmac_of_the_raw_body() -> None:
    body = b'{"event":"delivered","timestamp":1457764197627,"message_token":4912661846655238145}'
    expected = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    assert sign(TOKEN, body) == expected
    assert signature_ok(TOKEN, body, sign(TOKEN, body))
    assert signature_ok(TOKEN, body, sign(TOKEN, body).upper())
    assert not signature_ok(TOKEN, body + b" ", sign(TOKEN, body))
    assert not signature_ok("another-token", body, sign(TOKEN, body))
    assert not signature_ok(TOKEN, body, None) and not signature_ok(TOKEN, body, "")


def test_a_64_bit_message_token_is_kept_exactly() -> None:
    result = answer_to_result(200, b'{"status":0,"status_message":"ok","message_token":%d}' % BIG)
    assert (result.provider_id, result.reports) == (str(BIG), [])
    callback = msgspec.json.decode(b'{"event":"delivered","message_token":%d,"user_id":"u"}' % BIG, type=Callback)
    assert callback_receipt(callback) == Receipt("VIBER", str(BIG), "DELIVERED")


def test_callbacks_to_receipts() -> None:
    def receipt(**fields: object) -> Receipt | None:
        return callback_receipt(msgspec.convert({"message_token": 7, **fields}, Callback))

    assert receipt(event="seen") == Receipt("VIBER", "7", "SEEN")
    failed = receipt(event="failed", desc="blocked")
    assert failed is not None and (failed.outcome, failed.error) == ("UNDELIVERABLE", "EC_PROVIDER_DR_ERROR")
    assert failed.detail == "Viber failed callback: blocked"
    assert receipt(event="subscribed", user={"id": "u"}) is None
    assert receipt(event="webhook") is None
    assert callback_receipt(Callback(event="delivered")) is None  # no token: nothing to find


def test_answers_that_are_not_viber_status_answers() -> None:
    (report,) = answer_to_result(502, b"Bad Gateway", tries=3).reports
    assert (report.outcome, report.after_s) == ("RETRY", 4.0)
    (report,) = answer_to_result(200, b"<html>", tries=1).reports
    assert report.outcome == "RETRY"
    (report,) = answer_to_result(404, b"Not Found").reports
    assert (report.outcome, report.error) == ("REJECTED", "EC_BAD_REQUEST")
    (report,) = answer_to_result(200, b'{"status":99,"status_message":"whatever"}').reports
    assert (report.outcome, report.error) == ("UNDELIVERABLE", "EC_PROVIDER_DR_ERROR")
    assert report.detail == "Viber status 99 (generalError): whatever"


def test_users_are_keyed_by_international_digits() -> None:
    bot = ViberBotConfig(sender="S", auth_token="t", sender_name="n", users={"+41793026727": "u1"})
    assert load_users(bot) == {"41793026727": "u1"}
