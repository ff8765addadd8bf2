"""``GET /omni/1/reports`` (each report once, filters consume only what they return, concurrent pollers),
``GET /omni/1/logs`` (newest first, every filter, never consumes), account isolation and bad parameters.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from .conftest import ALADDIN_CONFIG, BOB_KEY, WHATSAPP_SMS_FLOW, Gateway, app_auth
from .test_failover import (
    DATE,
    DELIVERED_TO_HANDSET,
    UNDELIVERABLE_NOT_DELIVERED,
    get_message,
    send,
    short,
    take_reports,
    uid,
    validity,
    wait_message,
    wait_reports,
)

# numbers ending in 7: WhatsApp rejects them (-> SMS); in 5: undeliverable everywhere; in 9: no report ever.
CONFIG = ALADDIN_CONFIG + r"""
[limits]
min_validity_seconds = 1

[[sandbox.rules]]
channel = "WHATSAPP"
to = '\d+7'
outcome = "REJECTED"

[[sandbox.rules]]
to = '\d+5'
outcome = "UNDELIVERABLE"

[[sandbox.rules]]
to = '\d+9'
outcome = "EXPIRED"
"""

BOB = app_auth(BOB_KEY)


@pytest.fixture
def gw(make_gateway: Callable[..., Gateway]) -> Gateway:
    """A fresh gateway (so account-wide answers hold only this test's messages), WHATSAPP-SMS default."""
    gateway = make_gateway(CONFIG)
    gateway.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    return gateway


def logs(gw: Gateway, query: str = "", *, auth: str | None = None) -> list[dict[str, Any]]:
    r = gw.get("/omni/1/logs" + (f"?{query}" if query else ""), **({"auth": auth} if auth else {}))
    assert r.status == 200, r
    assert set(r.json) == {"results"}, r
    results: list[dict[str, Any]] = r.json["results"]
    return results


def ids_of(results: list[dict[str, Any]]) -> list[str]:
    return [r["messageId"] for r in results]


def wait_all_done(gw: Gateway, message_ids: list[str], timeout: float = 10.0) -> None:
    for mid in message_ids:
        wait_message(gw, mid, timeout=timeout)


def fmt(t: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


# --- reports -----------------------------------------------------------------------------------------


def test_each_report_filter_consumes_only_what_it_returns(gw: Gateway) -> None:
    a, b = uid("A"), uid("B")
    a0, a1, a2 = send(gw, ["41710000010", "41710000017", "41710000020"], bulkId=a)  # WA, SMS, WA
    b0, b1, b2 = send(gw, ["41710000030", "41710000037", "41710000047"], bulkId=b)  # WA, SMS, SMS
    wait_all_done(gw, [a0, a1, a2, b0, b1, b2])

    (only,) = take_reports(gw, messageId=a1)
    assert only["messageId"] == a1 and only["bulkId"] == a and only["channel"] == "SMS", only
    assert take_reports(gw, messageId=a1) == []

    (first_a,) = take_reports(gw, bulkId=a, limit=1)
    assert first_a["bulkId"] == a and first_a["messageId"] in (a0, a2), first_a

    # a refused request consumes nothing
    bad = gw.get(f"/omni/1/reports?bulkId={b}&channel=CARRIER_PIGEON")
    assert bad.status == 400, bad

    sms = take_reports(gw, channel="SMS")
    assert sorted(ids_of(sms)) == sorted([b1, b2]), sms
    assert all(r["channel"] == "SMS" for r in sms)

    rest_a = take_reports(gw, bulkId=a)
    assert ids_of(rest_a) == [({a0, a2} - {first_a["messageId"]}).pop()], rest_a

    assert ids_of(take_reports(gw)) == [b0]
    assert take_reports(gw) == []


def test_reports_come_oldest_first_and_limit_caps_them(gw: Gateway) -> None:
    bulk = uid("order")
    ids = []
    for n in range(4):  # one request each, so they finish one after another
        (mid,) = send(gw, [f"4171000010{n}"], bulkId=bulk)
        wait_message(gw, mid)
        ids.append(mid)
    two = take_reports(gw, limit=2)
    assert ids_of(two) == ids[:2], two
    assert ids_of(take_reports(gw, limit=1000)) == ids[2:]
    done = [datetime.strptime(r["doneAt"], "%Y-%m-%dT%H:%M:%S.%f%z") for r in two]
    assert done == sorted(done)


async def test_two_concurrent_pollers_never_get_the_same_report(gw: Gateway) -> None:
    total = 300
    # every ending: delivered on WhatsApp, rejected -> SMS, undeliverable, or expiring (1 s a step)
    numbers = [[f"417200{r}{i:04d}" for i in range(100)] for r in range(3)]
    bodies: list[dict[str, Any]] = [{"destinations": [{"to": {"phoneNumber": n}} for n in batch],
               "whatsApp": {"text": "Hi", **validity(1)}, "sms": {"text": "Hi", **validity(1)}} for batch in numbers]
    seen: list[Counter[str]] = [Counter(), Counter()]
    sent: set[str] = set()
    sending_done = asyncio.Event()

    async def poller(session: Any, counter: Counter[str]) -> None:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if sending_done.is_set() and sum(c.total() for c in seen) >= total:
                return
            async with session.get("/omni/1/reports", params={"limit": "7"}) as resp:
                assert resp.status == 200, await resp.text()
                data = await resp.json()
            counter.update(r["messageId"] for r in data["results"])
            if not data["results"]:
                await asyncio.sleep(0.01)

    async def sender(session: Any) -> None:
        for body in bodies:
            async with session.post("/omni/1/advanced", json=body) as resp:
                assert resp.status == 200, await resp.text()
                sent.update(m["messageId"] for m in (await resp.json())["messages"])
            await asyncio.sleep(0.05)
        sending_done.set()

    async with gw.session() as s1, gw.session() as s2, gw.session() as s3:
        # each poller runs several GETs in parallel on its own connection pool
        tasks = [poller(s, seen[k]) for k, s in ((0, s1), (1, s2)) for _ in range(4)]
        await asyncio.gather(sender(s3), *tasks)

    assert len(sent) == total
    for k, counter in enumerate(seen):
        dups = {m: c for m, c in counter.items() if c > 1}
        assert not dups, f"poller {k} got these more than once: {dups}"
    both = set(seen[0]) & set(seen[1])
    assert not both, f"both pollers got {len(both)} reports, e.g. {sorted(both)[:5]}"
    got = set(seen[0]) | set(seen[1])
    assert got == sent, f"missing {len(sent - got)}, unexpected {len(got - sent)}"
    assert take_reports(gw) == []


# --- logs --------------------------------------------------------------------------------------------


def test_logs_newest_first_with_every_filter_and_never_consume(gw: Gateway) -> None:
    l1, l2 = uid("L1"), uid("L2")
    x10, x15 = send(gw, ["41730000010", "41730000015"], bulkId=l1)
    time.sleep(0.3)
    middle = time.time()
    time.sleep(0.3)
    x27, x29 = send(gw, ["41730000027", "41730000029"], bulkId=l2)
    wait_all_done(gw, [x10, x15, x27])
    assert get_message(gw, x29)["phase"] == "ACTIVE"
    everything = {x10, x15, x27, x29}

    all_logs = logs(gw)
    assert set(ids_of(all_logs)) == everything, all_logs
    newest_first = ids_of(all_logs)
    assert set(newest_first[:2]) == {x27, x29} and set(newest_first[2:]) == {x10, x15}, newest_first

    entry = next(e for e in all_logs if e["messageId"] == x27)
    assert entry["to"] == "41730000027" and entry["bulkId"] == l2 and entry["channel"] == "SMS", entry
    assert entry["from"] == "InfoSMS" and entry["text"] == "Hi by SMS" and entry["messageCount"] == 1, entry
    assert short(entry["status"]) == DELIVERED_TO_HANDSET, entry
    assert DATE.fullmatch(entry["sentAt"]) and DATE.fullmatch(entry["doneAt"]), entry
    pending = next(e for e in all_logs if e["messageId"] == x29)
    assert pending["status"]["groupName"] == "PENDING" and pending.get("doneAt") is None, pending
    failed = next(e for e in all_logs if e["messageId"] == x15)
    assert short(failed["status"]) == UNDELIVERABLE_NOT_DELIVERED and failed["channel"] == "SMS", failed

    def found(query: dict[str, Any] | list[tuple[str, str]]) -> set[str]:
        return set(ids_of(logs(gw, urlencode(query))))

    assert found({"bulkId": l1}) == {x10, x15}
    assert found({"bulkId": f"{l1},{l2}"}) == everything
    assert found([("bulkId", l1), ("bulkId", l2)]) == everything
    assert found({"messageId": x10}) == {x10}
    assert found({"messageId": f"{x10},{x27}"}) == {x10, x27}
    assert found([("messageId", x15), ("messageId", x29)]) == {x15, x29}
    assert found({"generalStatus": "DELIVERED"}) == {x10, x27}
    assert found({"generalStatus": "UNDELIVERABLE"}) == {x15}
    assert found({"generalStatus": "PENDING"}) == {x29}
    assert found({"generalStatus": "REJECTED"}) == set()
    assert found({"channel": "SMS"}) == {x15, x27}
    assert found({"channel": "WHATSAPP"}) == {x10, x29}
    assert found({"to": "41730000015"}) == {x15}
    assert found({"sentSince": fmt(middle)}) == {x27, x29}
    assert found({"sentUntil": fmt(middle)}) == {x10, x15}
    assert found({"sentSince": fmt(middle), "channel": "SMS"}) == {x27}
    assert ids_of(logs(gw, "limit=1")) == newest_first[:1]
    assert ids_of(logs(gw, "limit=3")) == newest_first[:3]

    # none of that consumed a report, and reading reports does not remove log entries
    assert logs(gw) == all_logs
    assert set(ids_of(take_reports(gw))) == {x10, x15, x27}
    assert set(ids_of(logs(gw))) == everything


# --- accounts ----------------------------------------------------------------------------------------


def test_accounts_see_only_their_own_reports_logs_and_messages(gw: Gateway) -> None:
    bulk = uid("iso")
    (mine,) = send(gw, ["41740000010"], bulkId=bulk)
    wait_message(gw, mine)

    assert take_reports(gw, auth=BOB) == []
    assert take_reports(gw, auth=BOB, messageId=mine) == []
    assert take_reports(gw, auth=BOB, bulkId=bulk) == []
    assert logs(gw, auth=BOB) == []
    assert logs(gw, f"messageId={mine}", auth=BOB) == []
    r = gw.get(f"/omni/1/messages/{mine}", auth=BOB)
    assert r.status == 404, r
    assert r.error()["messageId"] == "NOT_FOUND"

    # bob's own message is his alone
    r = gw.post("/omni/1/scenarios", {"flow": WHATSAPP_SMS_FLOW, "default": True}, auth=BOB)
    assert r.status == 200, r
    (his,) = send(gw, ["41740000020"], auth=BOB)
    wait_message(gw, his, auth=BOB)
    assert ids_of(logs(gw, auth=BOB)) == [his]
    assert ids_of(logs(gw)) == [mine]
    assert gw.get(f"/omni/1/messages/{his}").status == 404

    # bob's polling took nothing of Aladdin's, and Aladdin's takes nothing of bob's
    assert ids_of(wait_reports(gw, 1)) == [mine]
    assert take_reports(gw) == []
    assert ids_of(take_reports(gw, auth=BOB)) == [his]


def test_unknown_message_is_404(gw: Gateway) -> None:
    r = gw.get("/omni/1/messages/no-such-message")
    assert r.status == 404, r
    assert r.error()["messageId"] == "NOT_FOUND"


# --- bad parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "param"), [
    ("/omni/1/reports?channel=CARRIER_PIGEON", "channel"),
    ("/omni/1/logs?channel=CARRIER_PIGEON", "channel"),
    ("/omni/1/logs?generalStatus=LOST", "generalStatus"),
    ("/omni/1/reports?limit=0", "limit"),
    ("/omni/1/reports?limit=1001", "limit"),
    ("/omni/1/reports?limit=ten", "limit"),
    ("/omni/1/logs?limit=0", "limit"),
    ("/omni/1/logs?limit=1001", "limit"),
    ("/omni/1/logs?sentSince=yesterday", "sentSince"),
])
def test_bad_parameter_is_400_naming_it(gateway: Gateway, path: str, param: str) -> None:
    r = gateway.get(path)
    assert r.status == 400, r
    assert r.error()["messageId"] == "BAD_REQUEST"
    assert list(r.validation()) == [param], r
    assert param in r.error()["text"], r


def test_limit_bounds_are_accepted(gateway: Gateway) -> None:
    for path in ("/omni/1/reports?limit=1", "/omni/1/reports?limit=1000", "/omni/1/logs?limit=1",
                 "/omni/1/logs?limit=1000"):
        r = gateway.get(path)
        assert r.status == 200, (path, r)
