"""The console's message search on both real stores (a SQLite file and a fresh PostgreSQL database): keyset pages
in a stable newest-first order also when many messages share one acceptance time, the count and its cap, the
error filter (a final error or a step's), and account isolation."""

from __future__ import annotations

import hashlib
import itertools
import time

import pytest

from omnirelay.domain.message import Attempt, MessageState, rejected_state, state_encoder
from omnirelay.store.base import Found, LogQuery, MessageSearch, NewMessage, Store

pytestmark = pytest.mark.timeout(120)

PAYLOAD = b'{"steps":[{"channel":"WHATSAPP","sender":"WA","validity_s":60},{"channel":"SMS","sender":"Info"}]}'


def message(message_id: str, state: bytes = b'{"phase":"WAITING"}', rejected: bool = False) -> NewMessage:
    return NewMessage(
        message_id=message_id,
        to_json=b'{"phoneNumber":"41793026727"}',
        content_hash=hashlib.blake2b(message_id.encode(), digest_size=16).digest(),
        state=state,
        supplied=True,
        address="41793026727",
        rejected=rejected,
    )


async def accept_at(store: Store, account: int, at: float, ids: list[str]) -> None:
    """Store messages accepted at one same instant ``at`` (one request)."""
    await store.accept(account, PAYLOAD, None, [message(i) for i in ids], at, at)


def search(since: float, limit: int = 50, error: str | None = None, **filters: object) -> MessageSearch:
    return MessageSearch(LogQuery(since=since, limit=limit, **filters), error)  # type: ignore[arg-type]


async def walk(store: Store, account: int, query: MessageSearch) -> list[list[Found]]:
    """Every page, following the cursor of each page's last message."""
    pages = [await store.search_messages(account, query)]
    while pages[-1]:
        pages.append(await store.search_messages(account, query, after=pages[-1][-1].cursor))
    return pages[:-1]


async def test_keyset_pages_are_stable_with_equal_times(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    b = (await store.create_account("b", None, "s", "cli")).id
    t0 = time.time() - 600
    # 3 + 4 + 3 messages at three instants: pages of 3 cut through the groups of equal times
    await accept_at(store, a, t0, ["a1", "a2", "a3"])
    await accept_at(store, a, t0 + 1, ["b1", "b2", "b3", "b4"])
    await accept_at(store, a, t0 + 2, ["c1", "c2", "c3"])
    await accept_at(store, b, t0 + 1, ["other-1", "other-2"])
    query = search(t0 - 1, limit=3)

    pages = await walk(store, a, query)
    ids = [[f.view.message_id for f in p] for p in pages]
    # newest first; within one instant, the later stored first; no message twice, none missing
    assert ids == [["c3", "c2", "c1"], ["b4", "b3", "b2"], ["b1", "a3", "a2"], ["a1"]]
    assert [f.cursor.created_at for f in pages[1]] == [t0 + 1] * 3
    # the same walk again gives the same pages
    assert [[f.view.message_id for f in p] for p in await walk(store, a, query)] == ids

    # back: the page just newer than a page's first message is the page before it
    for before, page in itertools.pairwise(pages):
        back = await store.search_messages(a, query, before=page[0].cursor)
        assert [f.view.message_id for f in back] == [f.view.message_id for f in before]
    assert await store.search_messages(a, query, before=pages[0][0].cursor) == []
    # a cursor between two messages of one instant
    middle = pages[1][1].cursor
    assert [f.view.message_id for f in await store.search_messages(a, query, after=middle)] == ["b2", "b1", "a3"]
    assert [f.view.message_id for f in await store.search_messages(a, query, before=middle)] == ["c2", "c1", "b4"]

    # the other account's messages never show, even with a cursor taken from them (it only marks a place)
    theirs = await store.search_messages(b, search(t0 - 1))
    assert [f.view.message_id for f in theirs] == ["other-2", "other-1"]
    after_theirs = await store.search_messages(a, query, after=theirs[0].cursor)
    assert [f.view.message_id for f in after_theirs] == ["b4", "b3", "b2"]
    assert all(f.view.message_id.startswith("other") for f in await walk_all(store, b, search(t0 - 1, limit=1)))


async def walk_all(store: Store, account: int, query: MessageSearch) -> list[Found]:
    return [f for page in await walk(store, account, query) for f in page]


async def test_filters_and_window_apply_to_pages(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    t0 = time.time() - 600
    await store.accept(a, PAYLOAD, "bulk-1", [message(f"x{i}") for i in range(5)], t0, t0)
    await store.accept(a, PAYLOAD, "bulk-2", [message(f"y{i}") for i in range(5)], t0 + 5, t0 + 5)
    only = await walk_all(store, a, search(t0 - 1, limit=2, bulk_ids=("bulk-1",)))
    assert [f.view.message_id for f in only] == ["x4", "x3", "x2", "x1", "x0"]
    assert await store.count_messages(a, search(t0 - 1, bulk_ids=("bulk-1",)), 1000) == 5
    window = search(t0 + 1, limit=100)
    assert {f.view.message_id for f in await store.search_messages(a, window)} == {f"y{i}" for i in range(5)}
    assert await store.count_messages(a, window, 1000) == 5


async def test_count_is_exact_up_to_its_cap(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    b = (await store.create_account("b", None, "s", "cli")).id
    t0 = time.time() - 60
    await accept_at(store, a, t0, [f"m{i}" for i in range(25)])
    await accept_at(store, b, t0, [f"n{i}" for i in range(7)])
    assert await store.count_messages(a, search(t0 - 1), 1000) == 25
    assert await store.count_messages(a, search(t0 - 1), 25) == 25
    assert await store.count_messages(a, search(t0 - 1), 24) == 25  # cap + 1: "more than 24"
    assert await store.count_messages(a, search(t0 - 1), 10) == 11
    assert await store.count_messages(b, search(t0 - 1), 1000) == 7
    assert await store.count_messages(a, search(t0 + 1), 1000) == 0


def _failed_over(error: str) -> bytes:
    """A message whose first step failed with ``error`` and whose second was delivered (no final error)."""
    state = MessageState(
        phase="DONE",
        step=1,
        status="DELIVERED_TO_HANDSET",
        channel="SMS",
        attempts=[
            Attempt(step=0, channel="WHATSAPP", state="REJECTED", started_at=1.0, error=error),
            Attempt(step=1, channel="SMS", state="DELIVERED", started_at=2.0, status="DELIVERED_TO_HANDSET"),
        ],
    )
    return state_encoder.encode(state)


async def test_error_filter_finds_final_and_step_errors(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    b = (await store.create_account("b", None, "s", "cli")).id
    now = time.time()
    ours = [
        message("final", rejected_state(now, "REJECTED_DESTINATION", "EC_ABSENT_SUBSCRIBER", "no"), rejected=True),
        message("step", _failed_over("EC_ABSENT_SUBSCRIBER")),
        message("longer-name", _failed_over("EC_ABSENT_SUBSCRIBER_SM")),
        message("other-error", _failed_over("EC_UNKNOWN_SUBSCRIBER")),
        message("fine"),
    ]
    await store.accept(a, PAYLOAD, None, ours, now, now)
    theirs = message("theirs", rejected_state(now, "REJECTED_DESTINATION", "EC_ABSENT_SUBSCRIBER", "no"), True)
    await store.accept(b, PAYLOAD, None, [theirs], now, now)

    query = search(now - 1, error="EC_ABSENT_SUBSCRIBER")
    found = {f.view.message_id for f in await store.search_messages(a, query)}
    assert found == {"final", "step"}  # not EC_ABSENT_SUBSCRIBER_SM, nor the other account's
    assert await store.count_messages(a, query, 1000) == 2
    assert await store.count_messages(b, query, 1000) == 1
    unknown = await store.search_messages(a, search(now - 1, error="EC_UNKNOWN_SUBSCRIBER"))
    assert [f.view.message_id for f in unknown] == ["other-error"]
    # combined with another filter
    rejected = search(now - 1, error="EC_ABSENT_SUBSCRIBER", status_group=5)
    assert [f.view.message_id for f in await store.search_messages(a, rejected)] == ["final"]
    with pytest.raises(ValueError):
        await store.search_messages(a, search(now - 1, error='X" OR 1=1'))
