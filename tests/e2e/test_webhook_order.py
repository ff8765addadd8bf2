"""A message's reports are pushed in order: its intermediate report is received before its final report, even
when the receiver is slow with the intermediate one or fails it (the final one then waits for its retries).

Real gateway and a real HTTP receiver (``Receiver`` of test_webhooks); WhatsApp rejects the numbers (sandbox
rule), the message fails over to SMS and is delivered there: an intermediate WHATSAPP report, then the final
SMS report, both stored in the same transaction. Runs on PostgreSQL too (``OMNIRELAY_TEST_STORE=postgres``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from .conftest import Gateway, GatewayPool
from .test_failover import send
from .test_webhooks import CONFIG, FLOW, Post, Receiver

MESSAGES = 6


@pytest.fixture(scope="module")
def gw(module_gateways: GatewayPool) -> Gateway:
    gateway = module_gateways(CONFIG)
    gateway.create_scenario(FLOW, default=True)
    return gateway


@pytest.fixture
def receiver() -> Iterator[Callable[[Callable[[Post], tuple[int, float]]], Receiver]]:
    made: list[Receiver] = []

    def make(answer: Callable[[Post], tuple[int, float]]) -> Receiver:
        r = Receiver(answer=answer)
        made.append(r)
        return r.start()

    yield make
    for r in made:
        r.stop()


def intermediate(post: Post) -> bool:
    return post.report["channel"] == "WHATSAPP"


def check_order(rx: Receiver, mids: list[str], timeout: float = 20.0) -> None:
    """Wait until every message's two reports were acknowledged (200); then check that each final report
    arrived (every time it was posted) only after its intermediate report had been acknowledged."""
    deadline = time.monotonic() + timeout
    while True:
        acked = {(p.report["messageId"], p.report["channel"]) for p, status, _ in rx.answered if status == 200}
        if all((mid, ch) in acked for mid in mids for ch in ("WHATSAPP", "SMS")):
            break
        assert time.monotonic() < deadline, f"not every report was acknowledged: {sorted(acked)}"
        time.sleep(0.05)
    for mid in mids:
        acked_at = min(at for p, status, at in rx.answered
                       if p.report["messageId"] == mid and intermediate(p) and status == 200)
        posts = [p for p in rx.snapshot() if p.report["messageId"] == mid]
        assert all(p.at > acked_at for p in posts if not intermediate(p)), [
            (p.report["channel"], p.at - acked_at) for p in posts
        ]


def numbers(base: int) -> list[str]:
    return [f"4175{base:03d}{i:03d}7" for i in range(MESSAGES)]  # ending in 7: WhatsApp rejects them


def test_final_waits_for_the_retries_of_a_failed_intermediate(
        gw: Gateway, receiver: Callable[[Callable[[Post], tuple[int, float]]], Receiver]) -> None:
    failed: set[str] = set()

    def answer(post: Post) -> tuple[int, float]:
        mid = post.report["messageId"]
        if intermediate(post) and mid not in failed:  # the first POST of each intermediate report: 500
            failed.add(mid)
            return 500, 0.0
        return 200, 0.0

    rx = receiver(answer)
    mids = send(gw, numbers(1), notifyUrl=rx.url(), intermediateReport=True)
    check_order(rx, mids)
    assert failed == set(mids)


def test_final_waits_for_a_slow_intermediate(
        gw: Gateway, receiver: Callable[[Callable[[Post], tuple[int, float]]], Receiver]) -> None:
    rx = receiver(lambda post: (200, 1.0 if intermediate(post) else 0.0))  # within the 2 s timeout
    mids = send(gw, numbers(2), notifyUrl=rx.url(), intermediateReport=True)
    check_order(rx, mids)
    for mid in mids:  # each report once: the slow one was not timed out and tried again
        assert len([p for p in rx.snapshot() if p.report["messageId"] == mid]) == 2


def test_order_holds_across_a_kill_9_while_the_intermediate_waits_for_its_retry(
        make_gateway: Callable[..., Gateway],
        receiver: Callable[[Callable[[Post], tuple[int, float]]], Receiver]) -> None:
    gw = make_gateway(CONFIG)
    gw.create_scenario(FLOW, default=True)
    accepting = threading.Event()

    def answer(post: Post) -> tuple[int, float]:
        return (200 if accepting.is_set() or not intermediate(post) else 503), 0.0

    rx = receiver(answer)
    mids = send(gw, numbers(3), notifyUrl=rx.url(), intermediateReport=True)
    rx.wait_posts(MESSAGES)  # each intermediate report was refused once; the finals wait behind them
    gw.kill9()
    assert all(intermediate(p) for p in rx.snapshot())
    accepting.set()
    gw.start()
    check_order(rx, mids)
