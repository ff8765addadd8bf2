"""Provider ids by prefix, the capability memory set from outside the engine, and the shared rate buckets."""

from __future__ import annotations

from omnirelay.store import rows
from omnirelay.store.flow import All, Dialect, Exec, Flow, One, Rows


def provider_ids_like(d: Dialect, channel: str, prefix: str, since: float, until: float, limit: int) -> Flow[list[str]]:
    """Provider ids of ``channel`` starting with ``prefix``, stored from ``since`` to ``until``, newest first."""
    found = yield All(d.q.provider_ids_like, channel, len(prefix), prefix, since, until, limit)
    return [str(r[0]) for r in found]


def set_capabilities(d: Dialect, memory: list[tuple[int, str, str, float]]) -> Flow[None]:
    """Upsert capability memory rows (account_id, channel, address, until); of a key given twice, the last."""
    latest = {(a, ch, ad): until for a, ch, ad, until in memory}  # PostgreSQL: one row per key in one statement
    yield Rows(d.q.put_capabilities, [(*k, v) for k, v in latest.items()])


def capabilities_of(d: Dialect, account_id: int, channel: str, addresses: list[str], now: float) -> Flow[set[str]]:
    """Which of ``addresses`` the capability memory holds for ``channel`` at ``now``."""
    found = yield All(d.q.capabilities_of, account_id, channel, now, addresses)
    return {str(r[0]) for r in found}


def take_tokens(d: Dialect, key: str, want: int, rate: float, burst: float, now: float) -> Flow[int]:
    """Take up to ``want`` tokens from the bucket ``key``; how many were granted."""
    yield Exec(d.q.seed_bucket, key, burst, now)
    bucket = yield One(d.q.bucket, key)
    granted, left = rows.take_tokens((bucket[0], bucket[1]) if bucket else None, want, rate, burst, now)
    yield Exec(d.q.put_bucket, key, left, now)
    return granted
