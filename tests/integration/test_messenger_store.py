"""``store.provider_ids_like``, by which a Messenger read (a user and a watermark, no message ids) finds the
steps it marks seen: on each real store, a SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

import time
from collections.abc import Callable

from omnirelay.store.base import Change, Store, Work
from tests.integration.test_store_contract import accept, message


async def test_provider_ids_by_user_prefix_and_time(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    await accept(store, a, *(message(f"fb{i}") for i in range(4)))
    started: list[Work] = []

    def start(work: list[Work]) -> tuple[list[Change], int]:
        started.extend(work)
        return [Change(w.message, w.account_id, w.state, 1, "FACEBOOK", None) for w in work], len(work)

    t0 = time.time()
    await store.engine_step(t0, 10, [], start)
    ids = sorted(w.message for w in started)

    def stored(message: int, channel: str, provider_id: str) -> Callable[[list[Work]], tuple[list[Change], int]]:
        def fn(work: list[Work]) -> tuple[list[Change], int]:
            return [Change(w.message, w.account_id, w.state, 1, channel, None, submitted=[(0, channel, provider_id)])
                    for w in work if w.message == message], len(work)

        return fn

    submitted = [
        (ids[0], "FACEBOOK", "1234:m_a", t0 + 1),
        (ids[1], "FACEBOOK", "1234:m_b", t0 + 2),
        (ids[2], "FACEBOOK", "12345:m_c", t0 + 2),  # another user whose PSID starts with the same digits
        (ids[3], "WHATSAPP", "1234:m_d", t0 + 2),  # another channel
    ]
    for m, channel, provider_id, at in submitted:
        await store.engine_step(at, 0, [(m, b'{"type":"submitted","step":0}')], stored(m, channel, provider_id))

    assert await store.provider_ids_like("FACEBOOK", "1234:", t0, t0 + 10, 100) == ["1234:m_b", "1234:m_a"]
    assert await store.provider_ids_like("FACEBOOK", "1234:", t0, t0 + 1.5, 100) == ["1234:m_a"]  # the watermark
    assert await store.provider_ids_like("FACEBOOK", "1234:", t0 + 1.5, t0 + 10, 100) == ["1234:m_b"]  # the window
    assert await store.provider_ids_like("FACEBOOK", "1234:", t0, t0 + 10, 1) == ["1234:m_b"]  # newest first
    assert await store.provider_ids_like("FACEBOOK", "999:", t0, t0 + 10, 100) == []
