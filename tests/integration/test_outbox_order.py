"""The outbox hands out a message's webhook deliveries in the order they were stored, on every store: a later
report of a message waits while an earlier one is unsent, in flight or waiting for its retry; one given up no
longer holds the next; other messages' reports are not held; inbound pushes (no message) never wait.
"""

from __future__ import annotations

import time

from omnirelay.store.base import Change, Store, Work

from .test_store_contract import accept, message

URL = "http://127.0.0.1:9/hook"


async def two_reports_each(store: Store, *message_ids: str) -> None:
    """Accept the messages and store, for each, an intermediate then a final report in one transaction."""
    a = (await store.create_account("a", None, "s", "cli")).id
    await accept(store, a, *(message(m) for m in message_ids))

    def handle(work: list[Work]) -> tuple[list[Change], int]:
        return [
            Change(
                w.message,
                w.account_id,
                w.state,
                3,
                "SMS",
                time.time(),
                webhooks=[
                    (f"{w.message_id}.step1", URL, "application/json", b'{"step":1}'),
                    (f"{w.message_id}.final", URL, "application/json", b'{"final":1}'),
                ],
            )
            for w in work
        ], len(work)

    await store.engine_step(time.time(), 10, [], handle)


async def test_a_later_report_waits_for_the_earlier_ones_delivery_and_retries(store: Store) -> None:
    await two_reports_each(store, "m1", "m2")
    now = time.time()
    first = await store.claim_deliveries(now, 10, 30)
    assert sorted(d.report_id for d in first) == ["m1.step1", "m2.step1"]  # both messages at once, finals held
    assert await store.claim_deliveries(now, 10, 30) == []  # in flight: the finals still wait
    m1, m2 = sorted(first, key=lambda d: d.report_id)
    await store.settle_deliveries([m2.id], [(m1.id, now + 5, "HTTP 500")])
    assert [d.report_id for d in await store.claim_deliveries(now, 10, 30)] == ["m2.final"]
    assert await store.claim_deliveries(now + 1, 10, 30) == []  # m1.final waits for m1.step1's retry
    (retried,) = await store.claim_deliveries(now + 6, 10, 30)
    assert retried.report_id == "m1.step1" and retried.attempts == 1
    await store.settle_deliveries([retried.id], [])
    assert [d.report_id for d in await store.claim_deliveries(now + 6, 10, 30)] == ["m1.final"]


async def test_a_given_up_report_no_longer_holds_the_next(store: Store) -> None:
    await two_reports_each(store, "m1")
    now = time.time()
    (step1,) = await store.claim_deliveries(now, 10, 30)
    await store.settle_deliveries([], [(step1.id, None, "HTTP 500")])  # tries used up
    assert [d.report_id for d in await store.claim_deliveries(now, 10, 30)] == ["m1.final"]


async def test_inbound_pushes_do_not_wait(store: Store) -> None:
    await two_reports_each(store, "m1")
    a = (await store.create_account("b", None, "s", "cli")).id
    now = time.time()
    await store.push_webhooks([(a, f"in-{i}", URL, "application/json", b"{}") for i in (1, 2)], now)
    claimed = sorted(d.report_id for d in await store.claim_deliveries(now + 1, 10, 30))
    assert claimed == ["in-1", "in-2", "m1.step1"]
