"""Webhook delivery: POST each report to its ``notifyUrl`` until the receiver answers 2xx.

Deliveries live in the store's outbox, written in the same transaction as the report itself, so a
report is never lost across restarts. A failed try is retried after 1 min + n² min (Infobip's cycle;
the minute is configurable), up to a configured number of tries. Every POST is signed
(``X-Omnirelay-Signature: sha256=<hex HMAC of the body with the account's webhook secret>``) and carries
a stable ``X-Omnirelay-Report-Id`` so receivers can drop duplicates.

Reports of one message are posted one after the other, in the order they were stored (intermediate reports
before the final one, a seen report after it): the store does not hand out a delivery while an earlier one of
the same message is unsent, in flight or waiting for its retry, so a later report waits for the earlier one's
retries too (only one given up no longer holds the next). Reports of different messages go out concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

import aiohttp

from omnirelay.domain.xml import reports_json_to_xml
from omnirelay.metrics import Metrics
from omnirelay.store.base import Delivery, Store
from omnirelay.store.errors import UNAVAILABLE, Outage

log = logging.getLogger("omnirelay.notifier")

SIGNATURE_HEADER = "X-Omnirelay-Signature"
REPORT_ID_HEADER = "X-Omnirelay-Report-Id"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(failures: int, base_seconds: float) -> float:
    """Delay before the next try after ``failures`` failed tries: base + base·n²."""
    return base_seconds + base_seconds * failures * failures


@dataclass(frozen=True)
class NotifierSettings:
    """Tunables of webhook delivery."""

    max_attempts: int = 10
    timeout_seconds: float = 10.0
    retry_base_seconds: float = 60.0
    batch_size: int = 100
    idle_poll_seconds: float = 0.5


class Notifier:
    """Delivers the outbox."""

    def __init__(self, store: Store, settings: NotifierSettings | None = None, metrics: Metrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.settings = settings or NotifierSettings()
        self._secrets: dict[int, str] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New deliveries may be waiting."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        outage = Outage("webhooks")
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    count = await self.deliver_due(session)
                    outage.ended()
                except asyncio.CancelledError:
                    raise
                except UNAVAILABLE as exc:
                    outage.began(exc)
                    count = 0
                except Exception:
                    log.exception("webhook round failed; retrying")
                    count = 0
                if count == 0:  # after a round that posted some, a message's next report may be free to go now
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.idle_poll_seconds)

    async def deliver_due(self, session: aiohttp.ClientSession) -> int:
        """Try every due delivery once; returns how many were tried."""
        lease = self.settings.timeout_seconds * 3 + 5
        batch = await self.store.claim_deliveries(time.time(), self.settings.batch_size, lease)
        if batch:
            errors = await asyncio.gather(*(self._deliver(session, d) for d in batch))
            now = time.time()
            retries: list[tuple[int, float | None, str]] = []
            for delivery, error in zip(batch, errors, strict=True):
                if error is None:
                    continue
                failures = delivery.attempts + 1
                if failures >= self.settings.max_attempts:
                    log.warning(
                        "webhook %s to %s given up after %d tries: %s",
                        delivery.report_id,
                        delivery.url,
                        failures,
                        error,
                    )
                    retries.append((delivery.id, None, error))
                else:
                    retries.append((delivery.id, now + retry_delay(failures, self.settings.retry_base_seconds), error))
            done = [d.id for d, error in zip(batch, errors, strict=True) if error is None]
            await self.store.settle_deliveries(done, retries)
            if self.metrics is not None:
                self.metrics.of(self.metrics.webhooks, "delivered").inc(len(done))
                self.metrics.of(self.metrics.webhooks, "retry").inc(sum(1 for r in retries if r[1] is not None))
                self.metrics.of(self.metrics.webhooks, "given_up").inc(sum(1 for r in retries if r[1] is None))
        return len(batch)

    async def _secret(self, account_id: int) -> str:
        secret = self._secrets.get(account_id)
        if secret is None:
            for account in await self.store.accounts():
                self._secrets[account.id] = account.webhook_secret
            secret = self._secrets.get(account_id, "")
        return secret

    async def _deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> str | None:
        """POST one delivery; None when the receiver acknowledged it, else what went wrong."""
        body = delivery.body
        if delivery.content_type == "application/xml":
            body = reports_json_to_xml(body)
        headers = {
            "Content-Type": delivery.content_type,
            SIGNATURE_HEADER: sign(await self._secret(delivery.account_id), body),
            REPORT_ID_HEADER: delivery.report_id,
            "User-Agent": "omnirelay-webhooks",
        }
        try:
            async with session.post(delivery.url, data=body, headers=headers) as response:
                await response.read()
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
