"""WhatsApp over the Cloud API end to end: a real ``omnirelay serve`` configured with a ``[[whatsapp.senders]]``
whose ``base_url`` points at Prism serving Meta's OpenAPI document (tests/prism.py), and signed status
webhooks posted to the gateway's ``/webhooks/whatsapp/{sender}`` the way Meta posts them.

Correlation. Prism answers every valid send with the document's example, so every message would get the same
wamid and a status webhook could not name one message. A small recording reverse proxy (``RecordingProxy``)
therefore sits between the gateway and Prism: it forwards each request to Prism unchanged (so Prism still
validates every body we send: a 422 reaches the gateway as a rejection and the tests check that Prism
answered 200 to each), records it, and rewrites the wamid of Prism's 200 answer to one of its own
(``wamid.testNNNNNNNN``). The tests read that wamid from the recording, check that the gateway stored the
same one (``providerId`` of the attempt in ``GET /omni/1/messages/{id}``), and name it in the webhooks.
Graph errors answered synchronously (which Prism cannot produce) are queued on the proxy: it passes the
request through Prism first, then answers the error instead of Prism's 200.

The SMS step after WhatsApp is the sandbox (a number ending in 0, 4, 5, 6, 8 or 9 is delivered).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.prism import PHONE_NUMBER_ID, Exchange, Prism, RecordingProxy, graph_error
from tests.prism import prism as prism  # the session fixture

from .conftest import ALADDIN_KEY, Gateway, GatewayPool
from .test_failover import DELIVERED_TO_HANDSET, NO_ERROR, get_message, short, uid, wait_message, wait_reports
from .test_webhooks import Receiver

APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "my-verify-token"
SENDER = "WhatsAppSender"
FLOW = [{"from": SENDER, "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}]
EC_UNKNOWN_USER = {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 7002, "name": "EC_UNKNOWN_USER",
                   "permanent": True}


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

[[whatsapp.senders]]
sender = "{SENDER}"
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "EAABwzLixnjYBOzYmNMJJGfHq9DgNh"
app_secret = "{APP_SECRET}"
verify_token = "{VERIFY_TOKEN}"
base_url = "{base_url}"
account = "Aladdin"
"""


@pytest.fixture(scope="module")
def proxy(prism: Prism) -> Iterator[RecordingProxy]:
    p = RecordingProxy(prism.url).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool, proxy: RecordingProxy, receiver: Receiver) -> Gateway:
    gateway = module_gateways(config(proxy.url, receiver.url("/inbound")))
    gateway.create_scenario(FLOW, default=True)
    return gateway


# --- helpers --------------------------------------------------------------------------------------------

_numbers = iter(range(10_000))


def number(last: int = 0) -> str:
    """A fresh destination ending in ``last`` (0: the SMS sandbox delivers it)."""
    return f"4179{next(_numbers):06d}{last}"


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def notification(*, statuses: list[dict[str, Any]] | None = None,
                 messages: list[dict[str, Any]] | None = None) -> bytes:
    """A Cloud API webhook notification as Meta posts it."""
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID}}
    if statuses is not None:
        value["statuses"] = statuses
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Sheena Nelson"}, "wa_id": messages[0]["from"]}]
        value["messages"] = messages
    change = {"field": "messages", "value": value}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "419561257915477", "changes": [change]}]}).encode()


def status(wamid: str, to: str, state: str, error: int | None = None, title: str = "") -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "status": state, "timestamp": str(int(time.time())), "recipient_id": to}
    if state != "failed":
        item["conversation"] = {"id": "c1", "origin": {"type": "utility"}}
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    if error is not None:
        item["errors"] = [{"code": error, "title": title, "message": title, "error_data": {"details": title}}]
    return item


def post_statuses(gw: Gateway, *statuses: dict[str, Any], secret: str = APP_SECRET) -> int:
    raw = notification(statuses=list(statuses))
    r = gw.post(f"/webhooks/whatsapp/{SENDER}", raw, auth=None,
                headers={"X-Hub-Signature-256": sign(raw, secret)})
    return r.status


def send(gw: Gateway, to: str, **body: Any) -> str:
    payload = {"destinations": [{"to": {"phoneNumber": to}}], "whatsApp": {"text": "Hi on WhatsApp"},
               "sms": {"text": "Hi by SMS"}, **body}
    r = gw.post("/omni/1/advanced", payload)
    assert r.status == 200, r
    message_id: str = r.json["messages"][0]["messageId"]
    return message_id


def sends_to(proxy: RecordingProxy, to: str, n: int = 1, timeout: float = 10.0) -> list[Exchange]:
    """Wait until ``n`` sends to ``to`` reached Prism; each must have passed Prism's validation."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in proxy.sends() if e.json.get("to") == to]
        if len(found) >= n:
            for e in found:
                assert e.prism_status == 200, e.prism_body.decode()
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {n} sends to {to} within {timeout}s")
        time.sleep(0.02)


def accepted_wamid(gw: Gateway, proxy: RecordingProxy, message_id: str, to: str) -> str:
    """The wamid of the message's WhatsApp send, once the gateway stored it."""
    (exchange,) = sends_to(proxy, to)
    assert exchange.wamid is not None
    msg = wait_message(gw, message_id, lambda m: any(a.get("providerId") == exchange.wamid for a in m["attempts"]))
    assert msg["attempts"][0]["channel"] == "WHATSAPP"
    return exchange.wamid


# --- the paths ------------------------------------------------------------------------------------------


def test_delivered(gw: Gateway, proxy: RecordingProxy) -> None:
    to = number()
    mid = send(gw, to)
    wamid = accepted_wamid(gw, proxy, mid, to)
    sent = sends_to(proxy, to)[0].json
    assert sent == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
                    "text": {"body": "Hi on WhatsApp", "preview_url": False}}
    assert post_statuses(gw, status(wamid, to, "sent")) == 200
    assert post_statuses(gw, status(wamid, to, "delivered")) == 200
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "WHATSAPP" and report["to"] == to
    assert short(report["status"]) == DELIVERED_TO_HANDSET and short(report["error"]) == NO_ERROR


def test_read_gives_a_seen_report_and_delivered_after_read_changes_nothing(
        gw: Gateway, proxy: RecordingProxy, receiver: Receiver) -> None:
    to = number()
    hook = f"/notify/{uid()}"
    mid = send(gw, to, notifyUrl=receiver.url(hook))
    wamid = accepted_wamid(gw, proxy, mid, to)
    # out of order, as Meta may send them: read first, then delivered
    assert post_statuses(gw, status(wamid, to, "read")) == 200
    assert post_statuses(gw, status(wamid, to, "delivered")) == 200
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "WHATSAPP" and short(report["status"]) == DELIVERED_TO_HANDSET

    deadline = time.monotonic() + 10
    while True:
        posts = [p for p in receiver.snapshot() if p.path == hook]
        seen = [p.json["results"][0] for p in posts if "seenAt" in p.json["results"][0]]
        finals = [p.json["results"][0] for p in posts if "status" in p.json["results"][0]]
        if seen and finals:
            break
        assert time.monotonic() < deadline, f"no seen and final report pushed: {posts}"
        time.sleep(0.05)
    (seen_report,) = seen
    assert seen_report["messageId"] == mid and seen_report["to"] == to and seen_report["from"] == SENDER
    assert seen_report["seenAt"] and (seen_report.get("sentAt") or seen_report.get("sendAt"))
    assert finals[0]["messageId"] == mid and finals[0]["channel"] == "WHATSAPP"
    msg = wait_message(gw, mid)
    assert msg["attempts"][0]["state"] == "SEEN"  # the later "delivered" did not take it back


def test_not_a_whatsapp_user_fails_over_to_sms_and_is_remembered(gw: Gateway, proxy: RecordingProxy) -> None:
    to = number()
    mid = send(gw, to)
    wamid = accepted_wamid(gw, proxy, mid, to)
    assert post_statuses(gw, status(wamid, to, "failed", 131026, "Message undeliverable")) == 200
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET
    msg = get_message(gw, mid)
    whatsapp = msg["attempts"][0]
    assert whatsapp["channel"] == "WHATSAPP" and whatsapp["state"] == "REJECTED"
    assert whatsapp["error"] == "EC_UNKNOWN_USER", whatsapp
    assert "WhatsApp error 131026 (Message undeliverable)" in whatsapp["note"], whatsapp  # the detail

    # capability memory: the next message to this number skips WhatsApp (no second send reaches Prism)
    second = send(gw, to)
    (report,) = wait_reports(gw, 1, messageId=second)
    assert report["channel"] == "SMS"
    assert len(sends_to(proxy, to)) == 1
    skipped = get_message(gw, second)["attempts"][0]
    assert skipped["channel"] == "WHATSAPP" and skipped["state"] == "SKIPPED"
    assert "capability memory" in skipped["note"]


def test_not_a_user_answered_at_once_fails_over_the_same_way(gw: Gateway, proxy: RecordingProxy) -> None:
    to = number()
    proxy.fail_next(*graph_error(131026, "Message undeliverable", details="Recipient is not a WhatsApp user"))
    mid = send(gw, to)
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "SMS" and short(report["status"]) == DELIVERED_TO_HANDSET
    (exchange,) = sends_to(proxy, to)
    assert exchange.status == 400  # Prism accepted the body; the proxy answered Meta's error
    whatsapp = get_message(gw, mid)["attempts"][0]
    assert (whatsapp["state"], whatsapp["error"]) == ("REJECTED", "EC_UNKNOWN_USER")


def test_throttled_is_sent_again_then_delivered(gw: Gateway, proxy: RecordingProxy) -> None:
    to = number()
    mid = send(gw, to)
    first = accepted_wamid(gw, proxy, mid, to)
    assert post_statuses(gw, status(first, to, "failed", 130429, "Rate limit hit")) == 200
    again = sends_to(proxy, to, n=2)  # the same step submitted again after the backoff
    assert again[0].json == again[1].json and again[1].wamid != first
    second = again[1].wamid
    assert second is not None
    wait_message(gw, mid, lambda m: any(a.get("providerId") == second for a in m["attempts"]))
    assert post_statuses(gw, status(second, to, "delivered")) == 200
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "WHATSAPP" and short(report["status"]) == DELIVERED_TO_HANDSET
    assert len(sends_to(proxy, to)) == 2
    history = " | ".join(line["text"] for line in get_message(gw, mid)["history"])
    assert "130429" in history, history


def test_forged_signature_is_refused_and_nothing_recorded(gw: Gateway, proxy: RecordingProxy) -> None:
    to = number()
    mid = send(gw, to)
    wamid = accepted_wamid(gw, proxy, mid, to)
    before = get_message(gw, mid)
    raw = notification(statuses=[status(wamid, to, "failed", 131026, "Message undeliverable")])
    for headers in ({"X-Hub-Signature-256": sign(raw, "not-the-app-secret")},
                    {"X-Hub-Signature-256": sign(raw + b" ")},
                    {}):
        r = gw.post(f"/webhooks/whatsapp/{SENDER}", raw, auth=None, headers=headers)
        assert r.status == 401, r
        assert r.error()["messageId"] == "UNAUTHORIZED"
    time.sleep(0.5)  # time enough for an engine cycle, had anything been recorded
    after = get_message(gw, mid)
    assert after["phase"] == before["phase"] != "DONE"
    assert after["attempts"] == before["attempts"] and after["history"] == before["history"]
    # the genuine notification still works
    assert post_statuses(gw, status(wamid, to, "delivered")) == 200
    (report,) = wait_reports(gw, 1, messageId=mid)
    assert report["channel"] == "WHATSAPP"


def test_unknown_sender_and_bad_json(gw: Gateway) -> None:
    raw = notification(statuses=[])
    r = gw.post("/webhooks/whatsapp/NoSuchSender", raw, auth=None, headers={"X-Hub-Signature-256": sign(raw)})
    assert r.status == 404
    broken = b'{"object": "whatsapp_business_account", "entry": ['
    r = gw.post(f"/webhooks/whatsapp/{SENDER}", broken, auth=None, headers={"X-Hub-Signature-256": sign(broken)})
    assert r.status == 400 and r.error()["messageId"] == "BAD_REQUEST"


def test_verification_handshake(gw: Gateway) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    r = gw.get(f"/webhooks/whatsapp/{SENDER}?{urlencode(query)}", auth=None)
    assert r.status == 200 and r.text == "1158201444"
    assert r.headers["content-type"].startswith("text/plain")
    wrong = gw.get(f"/webhooks/whatsapp/{SENDER}?{urlencode({**query, 'hub.verify_token': 'guess'})}", auth=None)
    assert wrong.status == 403


def test_inbound_message_is_pushed_to_the_accounts_inbound_url(gw: Gateway, receiver: Receiver) -> None:
    wamid = f"wamid.in.{uid()}"
    message = {"from": "16505551234", "id": wamid, "timestamp": "1749416383", "type": "text",
               "text": {"body": "Does it come in another color?"}}
    raw = notification(messages=[message])
    for _ in range(2):  # Meta sends a notification again when unsure
        r = gw.post(f"/webhooks/whatsapp/{SENDER}", raw, auth=None, headers={"X-Hub-Signature-256": sign(raw)})
        assert r.status == 200, r
    deadline = time.monotonic() + 10
    while not (posts := [p for p in receiver.snapshot() if p.path == "/inbound" and wamid in p.body.decode()]):
        assert time.monotonic() < deadline, receiver.snapshot()
        time.sleep(0.05)
    time.sleep(0.3)
    posts = [p for p in receiver.snapshot() if p.path == "/inbound" and wamid in p.body.decode()]
    # Queued twice before the first push, it is pushed once; a repeat after the push is delivered again with the
    # same report id, by which the receiver drops it (at least once, like every webhook).
    assert 1 <= len(posts) <= 2
    assert {p.report_id for p in posts} == {f"inbound.{wamid}"} and len({p.body for p in posts}) == 1
    assert posts[0].json == {
        "results": [{
            "from": "16505551234",
            "to": SENDER,
            "integrationType": "WHATSAPP",
            "receivedAt": "2025-06-08T20:59:43.000+0000",
            "messageId": wamid,
            "pairedMessageId": None,
            "callbackData": None,
            "message": {"type": "TEXT", "text": "Does it come in another color?"},
            "contact": {"name": "Sheena Nelson"},
        }],
        "messageCount": 1,
        "pendingMessageCount": 0,
    }


def test_every_send_passed_metas_schema(gw: Gateway, proxy: RecordingProxy) -> None:
    # last in the module: whatever the tests above sent, Prism validated and accepted
    sends = proxy.sends()
    assert sends, "no send reached Prism"
    assert [e.prism_status for e in sends] == [200] * len(sends), [e.prism_body for e in sends if e.prism_status != 200]
