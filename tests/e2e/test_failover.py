"""The failover engine end to end, against a real ``omnirelay serve``: the tutorial, every sandbox outcome,
expiry, delayed and late reports, capability memory, ``sendAt`` and SMS part counts.

Outcomes are set by ``[[sandbox.rules]]`` matched on the destination number, so one gateway serves many
tests: each test uses numbers of its own and reads its reports filtered by ``messageId`` or ``bulkId``.
The helpers at the top are shared with the other engine test modules.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from .conftest import ALADDIN_BASIC, ALADDIN_CONFIG, BOB_KEY, WHATSAPP_SMS_FLOW, Gateway, GatewayPool, app_auth

DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000")

DELIVERED_TO_HANDSET = {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}
UNDELIVERABLE_NOT_DELIVERED = {
    "groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED",
}
REJECTED_DESTINATION = {"groupId": 5, "groupName": "REJECTED", "id": 52, "name": "REJECTED_DESTINATION"}
EXPIRED_EXPIRED = {"groupId": 4, "groupName": "EXPIRED", "id": 15, "name": "EXPIRED_EXPIRED"}
NO_ERROR = {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": False}
EC_ABSENT_SUBSCRIBER_SM = {
    "groupId": 1, "groupName": "HANDSET_ERRORS", "id": 6, "name": "EC_ABSENT_SUBSCRIBER_SM", "permanent": False,
}
EC_ILLEGAL_SUBSCRIBER = {
    "groupId": 1, "groupName": "HANDSET_ERRORS", "id": 9, "name": "EC_ILLEGAL_SUBSCRIBER", "permanent": True,
}
EC_UNKNOWN_SUBSCRIBER = {
    "groupId": 1, "groupName": "HANDSET_ERRORS", "id": 1, "name": "EC_UNKNOWN_SUBSCRIBER", "permanent": True,
}
EC_VALIDITY_EXPIRED = {
    "groupId": 2, "groupName": "USER_ERRORS", "id": 4101, "name": "EC_VALIDITY_EXPIRED", "permanent": True,
}
EC_HARD_BOUNCE = {"groupId": 2, "groupName": "USER_ERRORS", "id": 6012, "name": "EC_HARD_BOUNCE", "permanent": True}

SMS_FLOW = [{"from": "InfoSMS", "channel": "SMS"}]


# --- helpers shared by the engine test modules -------------------------------------------------------


def _auth(auth: str | None) -> dict[str, Any]:
    return {} if auth is None else {"auth": auth}


def uid(prefix: str = "t") -> str:
    """A fresh identifier (bulkId, messageId) no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def take_reports(gw: Gateway, *, auth: str | None = None, **query: Any) -> list[dict[str, Any]]:
    """One ``GET /omni/1/reports`` (asserting 200): the reports it returned (and thereby consumed)."""
    path = "/omni/1/reports" + (f"?{urlencode(query)}" if query else "")
    r = gw.get(path, **_auth(auth))
    assert r.status == 200, r
    assert set(r.json) == {"results"}, r
    results: list[dict[str, Any]] = r.json["results"]
    return results


def wait_reports(gw: Gateway, n: int, timeout: float = 10.0, *, auth: str | None = None,
                 **query: Any) -> list[dict[str, Any]]:
    """Poll ``GET /omni/1/reports`` (with ``query``) until ``n`` reports were collected; returns them all."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        got += take_reports(gw, auth=auth, **query)
        if len(got) >= n:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(got)} of {n} reports ({query}) within {timeout}s: {got}")
        time.sleep(0.05)


def get_message(gw: Gateway, message_id: str, *, auth: str | None = None) -> dict[str, Any]:
    r = gw.get(f"/omni/1/messages/{message_id}", **_auth(auth))
    assert r.status == 200, r
    body: dict[str, Any] = r.json
    return body


def wait_message(gw: Gateway, message_id: str, until: Callable[[dict[str, Any]], bool] | None = None,
                 timeout: float = 10.0, *, auth: str | None = None) -> dict[str, Any]:
    """Poll ``GET /omni/1/messages/{id}`` until ``until(message)`` (default: the message is DONE)."""
    until = until or (lambda m: m["phase"] == "DONE")
    deadline = time.monotonic() + timeout
    while True:
        msg = get_message(gw, message_id, auth=auth)
        if until(msg):
            return msg
        if time.monotonic() > deadline:
            raise AssertionError(f"message {message_id} not there within {timeout}s: {msg}")
        time.sleep(0.05)


def send(gw: Gateway, numbers: list[str], *, auth: str | None = None, **body: Any) -> list[str]:
    """``POST /omni/1/advanced`` to these numbers (asserting 200); the messageIds, in order."""
    payload = {"destinations": [{"to": {"phoneNumber": n}} for n in numbers], **body}
    payload.setdefault("whatsApp", {"text": "Hi on WhatsApp"})
    payload.setdefault("sms", {"text": "Hi by SMS"})
    r = gw.post("/omni/1/advanced", payload, **_auth(auth))
    assert r.status == 200, r
    ids = [m["messageId"] for m in r.json["messages"]]
    assert [m["to"]["phoneNumber"] for m in r.json["messages"]] == numbers, r
    return ids


def ts(text: str) -> float:
    """A date of the API as a UNIX timestamp (asserting Infobip's form)."""
    assert DATE.fullmatch(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def history(msg: dict[str, Any]) -> list[str]:
    return [line["text"] for line in msg["history"]]


def submitted_lines(msg: dict[str, Any], channel: str) -> list[str]:
    return [t for t in history(msg) if "submitted" in t and f"({channel})" in t]


def short(obj: dict[str, Any]) -> dict[str, Any]:
    """A status or error object without its description (checked separately to be a non-empty text)."""
    assert isinstance(obj.get("description"), str) and obj["description"], obj
    return {k: v for k, v in obj.items() if k != "description"}


def validity(seconds: int) -> dict[str, Any]:
    return {"validityPeriod": seconds, "validityPeriodTimeUnit": "SECONDS"}


# --- the gateways ------------------------------------------------------------------------------------

RULES_CONFIG = ALADDIN_CONFIG + r"""
[limits]
min_validity_seconds = 1

[[sandbox.rules]]
channel = "WHATSAPP"
to = '41700001\d{3}'
outcome = "SEEN"

[[sandbox.rules]]
channel = "WHATSAPP"
to = '41700002\d{3}'
outcome = "UNDELIVERABLE"
error = "EC_ILLEGAL_SUBSCRIBER"

[[sandbox.rules]]
channel = "WHATSAPP"
to = '41700003\d{3}'
outcome = "REJECTED"

[[sandbox.rules]]
channel = "WHATSAPP"
to = '41700004\d{3}'
outcome = "EXPIRED"

[[sandbox.rules]]
to = '41700005\d{3}'
outcome = "UNDELIVERABLE"
error = "EC_ILLEGAL_SUBSCRIBER"

[[sandbox.rules]]
to = '41700006\d{3}'
outcome = "REJECTED"

[[sandbox.rules]]
to = '41700007\d{3}'
outcome = "EXPIRED"

[[sandbox.rules]]
channel = "WHATSAPP"
to = '41700008\d{3}'
outcome = "DELIVERED"
after_ms = 1500

[[sandbox.rules]]
channel = "WHATSAPP"
to = '41700009\d{3}'
outcome = "REJECTED"

[[sandbox.rules]]
channel = "WHATSAPP"
to = '41700010\d{3}'
outcome = "DELIVERED"
after_ms = 3000

[[sandbox.rules]]
channel = "SMS"
to = '41700010\d{3}'
outcome = "EXPIRED"

[[sandbox.rules]]
channel = "WHATSAPP"
to = '41700011\d{3}'
outcome = "DELIVERED"
after_ms = 2500
"""

DEFAULT_RULES_CONFIG = ALADDIN_CONFIG + """
[limits]
min_validity_seconds = 1
"""


@pytest.fixture(scope="module")
def rules_gw(module_gateways: GatewayPool) -> Gateway:
    """A gateway whose sandbox outcomes are chosen by number (see RULES_CONFIG); WHATSAPP-SMS is default."""
    gw = module_gateways(RULES_CONFIG)
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True, name="wa-sms")
    return gw


@pytest.fixture(scope="module")
def default_rules_gw(module_gateways: GatewayPool) -> Gateway:
    """A gateway with no declared rules (README's default table) and a 1 s validity floor."""
    gw = module_gateways(DEFAULT_RULES_CONFIG)
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True, name="wa-sms")
    return gw


# --- the tutorial ------------------------------------------------------------------------------------


def test_tutorial_three_steps_fail_over_to_sms_and_report_once(make_gateway: Callable[..., Gateway]) -> None:
    """README's "Try the tutorial": the three requests, with its config and its Basic header."""
    gw = make_gateway(ALADDIN_CONFIG)
    created = gw.post("/omni/1/scenarios", {
        "name": "My WHATSAPP-SMS scenario",
        "flow": [{"from": "WhatsAppSender", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}],
        "default": True,
    }, auth=ALADDIN_BASIC)
    assert created.status == 200, created
    sent = gw.post("/omni/1/advanced", {
        "destinations": [{"to": {"phoneNumber": "41793026727"}}],
        "whatsApp": {"text": "Hi on WhatsApp"},
        "sms": {"text": "Hi by SMS"},
    }, auth=ALADDIN_BASIC)
    assert sent.status == 200, sent
    (message,) = sent.json["messages"]
    message_id = message["messageId"]

    (report,) = wait_reports(gw, 1, auth=ALADDIN_BASIC)
    assert report["messageId"] == message_id
    assert report["to"] == "41793026727"
    assert report["channel"] == "SMS"
    assert short(report["status"]) == DELIVERED_TO_HANDSET
    assert short(report["error"]) == NO_ERROR
    assert report["messageCount"] == 1
    assert ts(report["sentAt"]) <= ts(report["doneAt"])
    assert "bulkId" not in report or report["bulkId"] is None

    # returned once: the next GET (now, and a moment later) does not return it again
    assert take_reports(gw, auth=ALADDIN_BASIC) == []
    time.sleep(0.5)
    assert take_reports(gw, auth=ALADDIN_BASIC) == []

    # the history shows the WhatsApp rejection, the failover and the SMS delivery
    msg = get_message(gw, message_id, auth=ALADDIN_BASIC)
    assert msg["phase"] == "DONE" and msg["channel"] == "SMS", msg
    wa, sms = msg["attempts"]
    assert (wa["channel"], wa["state"], wa["status"], wa["error"]) == (
        "WHATSAPP", "REJECTED", "REJECTED_DESTINATION", "EC_UNKNOWN_USER"), msg
    assert (sms["channel"], sms["state"], sms["status"]) == ("SMS", "DELIVERED", "DELIVERED_TO_HANDSET"), msg
    assert len(submitted_lines(msg, "WHATSAPP")) == 1 and len(submitted_lines(msg, "SMS")) == 1, msg
    logs = gw.get(f"/omni/1/logs?messageId={message_id}", auth=ALADDIN_BASIC)
    assert logs.status == 200, logs
    (entry,) = logs.json["results"]
    assert entry["channel"] == "SMS" and short(entry["status"]) == DELIVERED_TO_HANDSET, entry
    # a finished message leaves no work behind (no validity timer waiting to fire in 48 hours)
    assert gw.query("SELECT kind FROM jobs") == []
    assert gw.query("SELECT step, channel FROM submissions ORDER BY step") == [(0, "WHATSAPP"), (1, "SMS")]


# --- each sandbox outcome ----------------------------------------------------------------------------


def test_delivered_on_whatsapp_never_tries_sms(rules_gw: Gateway) -> None:
    (mid,) = send(rules_gw, ["41799999001"])
    (report,) = wait_reports(rules_gw, 1, messageId=mid)
    assert report["channel"] == "WHATSAPP"
    assert short(report["status"]) == DELIVERED_TO_HANDSET and short(report["error"]) == NO_ERROR
    assert report["messageCount"] == 1
    msg = get_message(rules_gw, mid)
    assert [(a["channel"], a["state"]) for a in msg["attempts"]] == [("WHATSAPP", "DELIVERED")], msg
    assert submitted_lines(msg, "SMS") == [], msg


def test_seen_is_delivered_to_handset(rules_gw: Gateway) -> None:
    (mid,) = send(rules_gw, ["41700001001"])
    (report,) = wait_reports(rules_gw, 1, messageId=mid)
    assert report["channel"] == "WHATSAPP"
    assert short(report["status"]) == DELIVERED_TO_HANDSET and short(report["error"]) == NO_ERROR
    msg = get_message(rules_gw, mid)
    assert [(a["channel"], a["state"]) for a in msg["attempts"]] == [("WHATSAPP", "SEEN")], msg


def test_undeliverable_with_an_error_fails_over(rules_gw: Gateway) -> None:
    (mid,) = send(rules_gw, ["41700002001"])
    (report,) = wait_reports(rules_gw, 1, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET, report
    wa, sms = get_message(rules_gw, mid)["attempts"]
    assert (wa["channel"], wa["state"], wa["status"], wa["error"]) == (
        "WHATSAPP", "UNDELIVERABLE", "UNDELIVERABLE_NOT_DELIVERED", "EC_ILLEGAL_SUBSCRIBER")
    assert (sms["channel"], sms["state"]) == ("SMS", "DELIVERED")


def test_rejected_on_whatsapp_fails_over_at_once(rules_gw: Gateway) -> None:
    """WhatsApp has no validity given (48 h): only an immediate failover can bring the report."""
    (mid,) = send(rules_gw, ["41700003001"])
    (report,) = wait_reports(rules_gw, 1, timeout=5, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET, report
    wa, sms = get_message(rules_gw, mid)["attempts"]
    assert (wa["channel"], wa["state"], wa["status"], wa["error"]) == (
        "WHATSAPP", "REJECTED", "REJECTED_DESTINATION", "EC_UNKNOWN_USER")
    assert sms["channel"] == "SMS"


def test_expired_fails_over_when_the_validity_runs_out(rules_gw: Gateway) -> None:
    start = time.time()
    (mid,) = send(rules_gw, ["41700004001"], whatsApp={"text": "Hi", **validity(2)})
    time.sleep(1.2)
    assert take_reports(rules_gw, messageId=mid) == [], "failed over before the 2 s validity ran out"
    msg = get_message(rules_gw, mid)
    assert msg["phase"] == "ACTIVE" and msg["channel"] == "WHATSAPP", msg
    (report,) = wait_reports(rules_gw, 1, timeout=8, messageId=mid)
    assert time.time() - start >= 1.9
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET, report
    wa, sms = get_message(rules_gw, mid)["attempts"]
    assert (wa["channel"], wa["state"], wa["status"], wa["error"]) == (
        "WHATSAPP", "EXPIRED", "EXPIRED_EXPIRED", "EC_VALIDITY_EXPIRED")
    assert ts(sms["startedAt"]) - ts(wa["startedAt"]) >= 1.9, (wa, sms)
    assert ts(report["sentAt"]) - ts(wa["startedAt"]) >= 1.9, (wa, report)


@pytest.mark.parametrize(("number", "status", "error", "wa_error"), [
    ("41700005001", UNDELIVERABLE_NOT_DELIVERED, EC_ILLEGAL_SUBSCRIBER, "EC_ILLEGAL_SUBSCRIBER"),
    ("41700006001", REJECTED_DESTINATION, EC_UNKNOWN_SUBSCRIBER, "EC_UNKNOWN_USER"),
    ("41700007001", EXPIRED_EXPIRED, EC_VALIDITY_EXPIRED, "EC_VALIDITY_EXPIRED"),
], ids=["undeliverable", "rejected", "expired"])
def test_last_step_failure_ends_with_that_steps_status_and_error(
        rules_gw: Gateway, number: str, status: dict[str, Any], error: dict[str, Any], wa_error: str) -> None:
    (mid,) = send(rules_gw, [number], whatsApp={"text": "Hi", **validity(1)}, sms={"text": "Hi", **validity(1)})
    (report,) = wait_reports(rules_gw, 1, timeout=8, messageId=mid)
    assert report["channel"] == "SMS", report
    assert short(report["status"]) == status
    assert short(report["error"]) == error
    msg = get_message(rules_gw, mid)
    assert msg["phase"] == "DONE" and msg["channel"] == "SMS" and msg["error"] == error["name"], msg
    wa, sms = msg["attempts"]
    assert (wa["channel"], wa["error"]) == ("WHATSAPP", wa_error), msg
    assert (sms["channel"], sms["status"], sms["error"]) == ("SMS", status["name"], error["name"]), msg
    time.sleep(0.3)
    assert take_reports(rules_gw, messageId=mid) == []


def test_after_ms_delays_the_outcome(rules_gw: Gateway) -> None:
    start = time.monotonic()
    (mid,) = send(rules_gw, ["41700008001"])
    time.sleep(1.0)
    assert take_reports(rules_gw, messageId=mid) == [], "the outcome came before after_ms = 1500"
    (report,) = wait_reports(rules_gw, 1, timeout=6, messageId=mid)
    assert time.monotonic() - start >= 1.45
    assert report["channel"] == "WHATSAPP" and short(report["status"]) == DELIVERED_TO_HANDSET, report
    assert ts(report["doneAt"]) - ts(report["sentAt"]) >= 1.45, report


def test_readme_default_rule_table(default_rules_gw: Gateway) -> None:
    gw = default_rules_gw
    bulk = uid("defaults")
    numbers = ["41793026727", "41790000001", "41790000003", "41790000002", "41790000005"]
    ids = dict(zip(numbers, send(gw, numbers, bulkId=bulk, whatsApp={"text": "Hi", **validity(1)},
                                 sms={"text": "Hi", **validity(1)}), strict=True))
    reports = {r["to"]: r for r in wait_reports(gw, 5, timeout=10, bulkId=bulk)}
    assert set(reports) == set(numbers), reports
    assert {reports[n]["messageId"] for n in numbers} == set(ids.values())

    def outcome(number: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        r = reports[number]
        return r["channel"], short(r["status"]), short(r["error"])

    # ending 7: not a WhatsApp user -> SMS
    assert outcome("41793026727") == ("SMS", DELIVERED_TO_HANDSET, NO_ERROR)
    wa = get_message(gw, ids["41793026727"])["attempts"][0]
    assert (wa["channel"], wa["state"], wa["error"]) == ("WHATSAPP", "REJECTED", "EC_UNKNOWN_USER")
    # ending 1: undeliverable on any channel, so the last step's failure
    assert outcome("41790000001") == ("SMS", UNDELIVERABLE_NOT_DELIVERED, EC_ABSENT_SUBSCRIBER_SM)
    assert [a["state"] for a in get_message(gw, ids["41790000001"])["attempts"]] == ["UNDELIVERABLE"] * 2
    # ending 3: seen on WhatsApp after 500 ms
    assert outcome("41790000003") == ("WHATSAPP", DELIVERED_TO_HANDSET, NO_ERROR)
    seen = reports["41790000003"]
    assert ts(seen["doneAt"]) - ts(seen["sentAt"]) >= 0.45, seen
    assert get_message(gw, ids["41790000003"])["attempts"][0]["state"] == "SEEN"
    # ending 2: no report ever, each step expires
    assert outcome("41790000002") == ("SMS", EXPIRED_EXPIRED, EC_VALIDITY_EXPIRED)
    # anything else: delivered on the first step
    assert outcome("41790000005") == ("WHATSAPP", DELIVERED_TO_HANDSET, NO_ERROR)


def test_readme_default_rule_for_bounced_email(default_rules_gw: Gateway) -> None:
    gw = default_rules_gw
    key = gw.create_scenario([{"channel": "EMAIL", "from": "noreply@example.com"}], name="mail")["key"]
    r = gw.post("/omni/1/advanced", {"scenarioKey": key,
                                     "destinations": [{"to": {"emailAddress": "bounce@example.com"}}],
                                     "email": {"text": "Hello", "subject": "Hi"}})
    assert r.status == 200, r
    mid = r.json["messages"][0]["messageId"]
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "EMAIL"
    assert short(report["status"]) == UNDELIVERABLE_NOT_DELIVERED
    assert short(report["error"]) == EC_HARD_BOUNCE


# --- late reports ------------------------------------------------------------------------------------


def test_late_report_after_failover_does_not_flip_the_message(rules_gw: Gateway) -> None:
    """WhatsApp delivers at 3 s but its validity ran out at 1 s: the message had moved on to SMS, which
    was submitted; the late delivery goes into the history, and the message ends as its SMS step does."""
    (mid,) = send(rules_gw, ["41700010001"], whatsApp={"text": "Hi", **validity(1)},
                  sms={"text": "Hi", **validity(5)})
    msg = wait_message(rules_gw, mid, lambda m: any("late report" in t for t in history(m)), timeout=8)
    assert msg["phase"] == "ACTIVE", msg
    assert msg["channel"] == "SMS", msg
    assert len(submitted_lines(msg, "SMS")) == 1, msg
    assert take_reports(rules_gw, messageId=mid) == []

    (report,) = wait_reports(rules_gw, 1, timeout=8, messageId=mid)
    assert report["channel"] == "SMS", report
    assert short(report["status"]) == EXPIRED_EXPIRED and short(report["error"]) == EC_VALIDITY_EXPIRED
    msg = get_message(rules_gw, mid)
    assert msg["phase"] == "DONE" and msg["channel"] == "SMS", msg
    wa = msg["attempts"][0]
    assert (wa["channel"], wa["state"], wa["status"]) == ("WHATSAPP", "EXPIRED", "EXPIRED_EXPIRED"), msg
    lines = history(msg)
    late = next(i for i, t in enumerate(lines) if "late report" in t)
    final = next(i for i, t in enumerate(lines) if t.startswith("final"))
    assert late < final, lines
    assert "DELIVERED" in lines[late] and "WHATSAPP" in lines[late], lines
    time.sleep(0.3)
    assert take_reports(rules_gw, messageId=mid) == []


def test_late_report_after_the_final_one_is_only_history(rules_gw: Gateway) -> None:
    (mid,) = send(rules_gw, ["41700011001"], whatsApp={"text": "Hi", **validity(1)})
    (report,) = wait_reports(rules_gw, 1, timeout=6, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET, report
    msg = wait_message(rules_gw, mid, lambda m: any("late report" in t for t in history(m)), timeout=6)
    assert msg["phase"] == "DONE" and msg["channel"] == "SMS", msg
    assert msg["status"]["name"] == "DELIVERED_TO_HANDSET", msg
    assert msg["attempts"][0]["state"] == "EXPIRED", msg
    time.sleep(0.3)
    assert take_reports(rules_gw, messageId=mid) == [], "a late report made a second final report"


# --- capability memory -------------------------------------------------------------------------------


def test_capability_memory_skips_whatsapp_per_account(rules_gw: Gateway) -> None:
    number = "41700009001"
    (first,) = send(rules_gw, [number])
    (report,) = wait_reports(rules_gw, 1, messageId=first)
    assert report["channel"] == "SMS", report
    msg = get_message(rules_gw, first)
    assert msg["attempts"][0]["state"] == "REJECTED" and len(submitted_lines(msg, "WHATSAPP")) == 1, msg

    (second,) = send(rules_gw, [number])
    (report,) = wait_reports(rules_gw, 1, messageId=second)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET, report
    msg = get_message(rules_gw, second)
    wa, sms = msg["attempts"]
    assert (wa["channel"], wa["state"]) == ("WHATSAPP", "SKIPPED"), msg
    assert "capability memory" in wa.get("note", ""), wa
    assert (sms["channel"], sms["state"]) == ("SMS", "DELIVERED"), msg
    assert submitted_lines(msg, "WHATSAPP") == [], msg
    assert any("capability memory" in t for t in history(msg)), msg

    # another number of the same account is still tried on WhatsApp
    (other,) = send(rules_gw, ["41700009002"])
    wait_reports(rules_gw, 1, messageId=other)
    assert len(submitted_lines(get_message(rules_gw, other), "WHATSAPP")) == 1

    # the memory is the account's: bob sending to the same number still tries WhatsApp
    bob = app_auth(BOB_KEY)
    r = rules_gw.post("/omni/1/scenarios", {"flow": WHATSAPP_SMS_FLOW, "default": True}, auth=bob)
    assert r.status == 200, r
    (bobs,) = send(rules_gw, [number], auth=bob)
    (report,) = wait_reports(rules_gw, 1, auth=bob, messageId=bobs)
    assert report["channel"] == "SMS", report
    msg = get_message(rules_gw, bobs, auth=bob)
    assert msg["attempts"][0]["channel"] == "WHATSAPP" and msg["attempts"][0]["state"] == "REJECTED", msg
    assert len(submitted_lines(msg, "WHATSAPP")) == 1, msg


# --- sendAt ------------------------------------------------------------------------------------------


def test_send_at_waits_until_its_time(rules_gw: Gateway) -> None:
    when = datetime.now(UTC) + timedelta(seconds=3)
    send_at = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"
    (mid,) = send(rules_gw, ["41799999020"], sendAt=send_at)
    deadline = when.timestamp() - 0.3
    while time.time() < deadline:
        assert take_reports(rules_gw, messageId=mid) == [], "reported before its sendAt"
        msg = get_message(rules_gw, mid)
        assert msg["phase"] == "WAITING" and msg.get("attempts", []) == [], msg
        time.sleep(0.2)
    (report,) = wait_reports(rules_gw, 1, timeout=8, messageId=mid)
    assert time.time() >= when.timestamp() - 0.05
    assert ts(report["sentAt"]) >= ts(send_at) - 0.01, (report, send_at)
    assert report["channel"] == "WHATSAPP" and short(report["status"]) == DELIVERED_TO_HANDSET, report


# --- SMS parts ---------------------------------------------------------------------------------------


def test_sms_message_count_follows_the_encoding(rules_gw: Gateway) -> None:
    key = rules_gw.create_scenario(SMS_FLOW, name="sms only")["key"]
    cases = {"a" * 160: 1, "a" * 161: 2, "a" * 306: 2, "a" * 307: 3, "Ж" * 70: 1, "Ж" * 71: 2, "Ж" * 134: 2,
             "Ж" * 135: 3}
    expected: dict[str, tuple[str, int]] = {}
    for text, parts in cases.items():
        (mid,) = send(rules_gw, ["41799999030"], scenarioKey=key, sms={"text": text})
        expected[mid] = (f"{len(text)} x {text[0]}", parts)
    got = {}
    for mid, (label, _parts) in expected.items():
        (report,) = wait_reports(rules_gw, 1, messageId=mid)
        assert report["channel"] == "SMS", report
        got[label] = report["messageCount"]
    assert got == dict(expected.values())


def test_step_whose_object_has_only_a_validity_is_skipped(default_rules_gw: Gateway) -> None:
    """``"sms": {"validityPeriod": 5}`` gives SMS nothing to send: after WhatsApp's rejection nothing is left."""
    (mid,) = send(default_rules_gw, ["41793026717"], sms={"validityPeriod": 5})
    (report,) = wait_reports(default_rules_gw, 1, messageId=mid)
    assert report["channel"] == "WHATSAPP"
    assert short(report["status"]) == REJECTED_DESTINATION
    msg = get_message(default_rules_gw, mid)
    assert [(a["channel"], a["state"]) for a in msg["attempts"]] == [("WHATSAPP", "REJECTED"), ("SMS", "SKIPPED")]
    assert submitted_lines(msg, "SMS") == [], msg
