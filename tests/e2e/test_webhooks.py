"""Webhooks: reports pushed to ``notifyUrl``, received by a real HTTP server run by the test.

The receiver is an aiohttp server on 127.0.0.1 in a thread of its own (the gateway helpers block), which
records every POST and answers with the statuses it is told to, then 200.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import pytest
from aiohttp import web

from .conftest import ALADDIN_KEY, BOB_KEY, NODEFAULT_KEY, Gateway, GatewayPool, app_auth, free_port
from .test_failover import (
    DELIVERED_TO_HANDSET,
    EC_ABSENT_SUBSCRIBER_SM,
    NO_ERROR,
    REJECTED_DESTINATION,
    UNDELIVERABLE_NOT_DELIVERED,
    send,
    short,
    take_reports,
    wait_message,
    wait_reports,
)

ALADDIN_SECRET = "aladdin-webhook-secret"
BOB_SECRET = "bob-webhook-secret"

CONFIG = f"""
[[accounts]]
username = "Aladdin"
password = "open sesame"
api_keys = ["{ALADDIN_KEY}"]
webhook_secret = "{ALADDIN_SECRET}"

[[accounts]]
username = "bob"
password = "bob's password"
api_keys = ["{BOB_KEY}"]
webhook_secret = "{BOB_SECRET}"

[[accounts]]
username = "nodefault"
api_keys = ["{NODEFAULT_KEY}"]

[limits]
min_validity_seconds = 1

[webhooks]
retry_base_seconds = 0.5
timeout_seconds = 2

# numbers ending in 7: WhatsApp rejects them (not a user), Viber finds them undeliverable; SMS delivers all
[[sandbox.rules]]
channel = "WHATSAPP"
to = '\\d+7'
outcome = "REJECTED"

[[sandbox.rules]]
channel = "VIBER"
to = '\\d+7'
outcome = "UNDELIVERABLE"
"""

FLOW = [{"from": "WhatsAppSender", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}]
THREE_STEPS = [{"from": "WhatsAppSender", "channel": "WHATSAPP"}, {"from": "ViberSender", "channel": "VIBER"},
               {"from": "InfoSMS", "channel": "SMS"}]


@dataclass
class Post:
    """One POST the receiver got."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def report_id(self) -> str:
        return self.headers.get("x-omnirelay-report-id", "")

    @property
    def report(self) -> dict[str, Any]:
        data = self.json
        assert set(data) == {"results"} and len(data["results"]) == 1, data
        report: dict[str, Any] = data["results"][0]
        return report


class Receiver:
    """A webhook receiver on 127.0.0.1:``port``; answers ``statuses`` in turn, then 200 (or what ``answer`` says
    of each POST: a status, and how long to wait before answering)."""

    def __init__(self, port: int | None = None, statuses: tuple[int, ...] = (),
                 answer: Callable[[Post], tuple[int, float]] | None = None) -> None:
        self.port = port or free_port()
        self.statuses = list(statuses)
        self.answer = answer
        self.posts: list[Post] = []
        self.answered: list[tuple[Post, int, float]] = []
        """Each POST with the status it got and when (monotonic), in the order they were answered."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        ready = threading.Event()
        failed: list[BaseException] = []

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            post = Post(time.monotonic(), request.path, {k.lower(): v for k, v in request.headers.items()}, body)
            delay = 0.0
            with self._lock:
                self.posts.append(post)
                if self.answer is not None:
                    status, delay = self.answer(post)
                else:
                    status = self.statuses.pop(0) if self.statuses else 200
            if delay > 0:
                await asyncio.sleep(delay)
            with self._lock:
                self.answered.append((post, status, time.monotonic()))
            return web.Response(status=status, text="thanks" if status < 300 else "broken")

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/{tail:.*}", handle)
            runner = web.AppRunner(app)
            try:
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            except Exception as exc:  # e.g. the port is taken: reported to the starting thread
                failed.append(exc)
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def snapshot(self) -> list[Post]:
        with self._lock:
            return list(self.posts)

    def wait_posts(self, n: int, timeout: float = 10.0) -> list[Post]:
        deadline = time.monotonic() + timeout
        while True:
            posts = self.snapshot()
            if len(posts) >= n:
                return posts
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(posts)} of {n} webhook POSTs within {timeout}s: {posts}")
            time.sleep(0.05)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Factory of receivers (not started unless ``start=True``), all stopped at the end."""
    made: list[Receiver] = []

    def make(port: int | None = None, statuses: tuple[int, ...] = (), start: bool = True) -> Receiver:
        r = Receiver(port, statuses)
        made.append(r)
        return r.start() if start else r

    yield make
    for r in made:
        r.stop()


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool) -> Gateway:
    gateway = module_gateways(CONFIG)
    gateway.create_scenario(FLOW, default=True)
    return gateway


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- the push ----------------------------------------------------------------------------------------


def test_push_is_the_pulled_report_signed_with_the_accounts_secret(
        gw: Gateway, receivers: Callable[..., Receiver]) -> None:
    rx = receivers()
    (mid,) = send(gw, ["41750000017"], notifyUrl=rx.url("/hook/one"), callbackData="order 42")
    (post,) = rx.wait_posts(1)
    (pulled,) = wait_reports(gw, 1, messageId=mid)

    assert post.path == "/hook/one"
    assert post.headers["content-type"].startswith("application/json"), post.headers
    assert post.json == {"results": [pulled]}
    assert post.report["messageId"] == mid and post.report["channel"] == "SMS"
    assert post.report["callbackData"] == "order 42"
    assert short(post.report["status"]) == DELIVERED_TO_HANDSET and short(post.report["error"]) == NO_ERROR
    assert post.report_id, post.headers
    assert post.headers["x-omnirelay-signature"] == signature(ALADDIN_SECRET, post.body)
    # without intermediateReport the failed-over WhatsApp step is not pushed, and nothing comes twice
    time.sleep(1.5)
    assert len(rx.snapshot()) == 1, rx.snapshot()


def test_each_account_signs_with_its_own_secret(gw: Gateway, receivers: Callable[..., Receiver]) -> None:
    bob = app_auth(BOB_KEY)
    r = gw.post("/omni/1/scenarios", {"flow": FLOW, "default": True}, auth=bob)
    assert r.status == 200, r
    rx = receivers()
    send(gw, ["41750000100"], auth=bob, notifyUrl=rx.url())
    (post,) = rx.wait_posts(1)
    assert post.headers["x-omnirelay-signature"] == signature(BOB_SECRET, post.body)
    assert post.headers["x-omnirelay-signature"] != signature(ALADDIN_SECRET, post.body)


def test_retried_after_500_until_200_with_a_stable_report_id(
        gw: Gateway, receivers: Callable[..., Receiver]) -> None:
    rx = receivers(statuses=(500, 500))
    (mid,) = send(gw, ["41750000200"], notifyUrl=rx.url())
    posts = rx.wait_posts(3, timeout=15)
    time.sleep(2.0)  # the next retry after a third failure would come 5 s later; none must come at all
    posts = rx.snapshot()
    assert len(posts) == 3, posts
    assert {p.report_id for p in posts} == {posts[0].report_id} and posts[0].report_id, posts
    assert {p.body for p in posts} == {posts[0].body}
    assert all(p.headers["x-omnirelay-signature"] == signature(ALADDIN_SECRET, p.body) for p in posts)
    assert posts[0].report["messageId"] == mid
    # retried after base + base·n²: 1 s, then 2.5 s
    first_gap, second_gap = posts[1].at - posts[0].at, posts[2].at - posts[1].at
    assert first_gap >= 0.9, first_gap
    assert second_gap >= 2.3, second_gap
    # the pull is independent of the push
    assert [r["messageId"] for r in wait_reports(gw, 1, messageId=mid)] == [mid]


def test_notify_false_sends_nothing(gw: Gateway, receivers: Callable[..., Receiver]) -> None:
    rx = receivers()
    (quiet,) = send(gw, ["41750000300"], notifyUrl=rx.url(), notify=False)
    wait_message(gw, quiet)
    (loud,) = send(gw, ["41750000301"], notifyUrl=rx.url())
    rx.wait_posts(1)
    time.sleep(1.5)
    posts = rx.snapshot()
    assert [p.report["messageId"] for p in posts] == [loud], posts
    # the report of the quiet one is still there to pull
    assert [r["messageId"] for r in take_reports(gw, messageId=quiet)] == [quiet]


def test_intermediate_reports_one_per_failed_over_step_plus_the_final(
        gw: Gateway, receivers: Callable[..., Receiver]) -> None:
    key = gw.create_scenario(THREE_STEPS, name="wa-viber-sms")["key"]
    rx = receivers()
    (mid,) = send(gw, ["41750000407"], scenarioKey=key, viber={"text": "Hi on Viber"}, notifyUrl=rx.url(),
                  intermediateReport=True)
    rx.wait_posts(3)
    time.sleep(1.5)
    posts = rx.snapshot()
    assert len(posts) == 3, posts
    by_channel = {p.report["channel"]: p for p in posts}
    assert set(by_channel) == {"WHATSAPP", "VIBER", "SMS"}, posts
    assert all(p.report["messageId"] == mid for p in posts)
    assert len({p.report_id for p in posts}) == 3, [p.report_id for p in posts]
    wa, viber, sms = (by_channel[c].report for c in ("WHATSAPP", "VIBER", "SMS"))
    assert short(wa["status"]) == REJECTED_DESTINATION and wa["error"]["name"] == "EC_UNKNOWN_USER", wa
    assert short(viber["status"]) == UNDELIVERABLE_NOT_DELIVERED, viber
    assert short(viber["error"]) == EC_ABSENT_SUBSCRIBER_SM, viber
    assert short(sms["status"]) == DELIVERED_TO_HANDSET, sms
    for p in posts:
        assert p.headers["x-omnirelay-signature"] == signature(ALADDIN_SECRET, p.body)
    # the pull has only the final report, equal to the final push
    assert wait_reports(gw, 1, messageId=mid) == [sms]
    time.sleep(0.3)
    assert take_reports(gw, messageId=mid) == []


def test_xml_push_is_signed_over_the_xml_body(gw: Gateway, receivers: Callable[..., Receiver]) -> None:
    rx = receivers()
    (mid,) = send(gw, ["41750000600"], notifyUrl=rx.url(), notifyContentType="application/xml")
    (post,) = rx.wait_posts(1)
    assert post.headers["content-type"].startswith("application/xml"), post.headers
    root = ElementTree.fromstring(post.body)
    assert root.tag == "omniReportsResponse"
    (result,) = root.findall("./results/result")
    assert result.findtext("messageId") == mid
    assert result.findtext("channel") == "WHATSAPP"
    assert result.findtext("status/name") == "DELIVERED_TO_HANDSET"
    assert post.headers["x-omnirelay-signature"] == signature(ALADDIN_SECRET, post.body)


def test_gives_up_after_max_attempts(make_gateway: Callable[..., Gateway],
                                     receivers: Callable[..., Receiver]) -> None:
    gateway = make_gateway(CONFIG.replace("timeout_seconds = 2", "timeout_seconds = 2\nmax_attempts = 2"))
    gateway.create_scenario(FLOW, default=True)
    rx = receivers(statuses=(500,) * 10)
    send(gateway, ["41750000700"], notifyUrl=rx.url())
    rx.wait_posts(2, timeout=10)
    time.sleep(3.0)  # a third try would come 2.5 s after the second
    posts = rx.snapshot()
    assert len(posts) == 2, posts
    assert posts[0].report_id == posts[1].report_id


# --- restarts ----------------------------------------------------------------------------------------


def test_push_survives_kill_9_while_the_receiver_is_down(
        make_gateway: Callable[..., Gateway], receivers: Callable[..., Receiver]) -> None:
    gateway = make_gateway(CONFIG)
    gateway.create_scenario(FLOW, default=True)
    rx = receivers(start=False)  # its port is closed: every try fails
    (mid,) = send(gateway, ["41750000500"], notifyUrl=rx.url(), callbackData="survivor")
    wait_message(gateway, mid)
    time.sleep(1.3)  # a try or two fail meanwhile
    gateway.kill9()
    gateway.start()
    rx.start()
    (post,) = rx.wait_posts(1, timeout=25)
    (pulled,) = wait_reports(gateway, 1, messageId=mid)
    assert post.json == {"results": [pulled]}
    assert post.report["callbackData"] == "survivor"
    assert post.report_id
    assert post.headers["x-omnirelay-signature"] == signature(ALADDIN_SECRET, post.body)
    time.sleep(1.5)
    assert len(rx.snapshot()) == 1, rx.snapshot()


def test_a_read_message_gets_a_seen_report_after_its_delivery_report(
        module_gateways: GatewayPool, receivers: Callable[..., Receiver]) -> None:
    seen_rule = """
[[sandbox.rules]]
channel = "WHATSAPP"
to = '\\d+3'
outcome = "SEEN"
after_ms = 200
"""
    gateway = module_gateways(CONFIG + seen_rule)
    gateway.create_scenario(FLOW, default=True)
    rx = receivers()
    (mid,) = send(gateway, ["41750000303"], notifyUrl=rx.url())
    seen, final = sorted(rx.wait_posts(2), key=lambda p: p.report_id.endswith(".final"))  # sent together
    assert final.report["messageId"] == mid and final.report["channel"] == "WHATSAPP"
    assert short(final.report["status"]) == DELIVERED_TO_HANDSET
    (report,) = seen.json["results"]
    assert set(report) == {"messageId", "from", "to", "sentAt", "sendAt", "seenAt"}, report
    assert (report["messageId"], report["from"], report["to"]) == (mid, "WhatsAppSender", "41750000303")
    assert report["sentAt"] == report["sendAt"] == final.report["sentAt"]
    assert report["seenAt"] >= report["sentAt"]
    assert seen.report_id.endswith(".seen") and seen.report_id != final.report_id
    assert seen.headers["x-omnirelay-signature"] == signature(ALADDIN_SECRET, seen.body)
    time.sleep(1.0)
    assert len(rx.snapshot()) == 2
