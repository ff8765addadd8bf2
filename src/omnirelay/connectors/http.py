"""What every HTTP connector does the same way (WhatsApp Cloud, Viber, FCM, Messenger, LINE).

A connector subclasses :class:`HttpConnector` and keeps only what is its own: which configured sender a step's
``from`` names, the request body an OMNI object becomes (:meth:`~HttpConnector.prepare`), and the request with
its URL, authentication and answer mapping (:meth:`~HttpConnector.send`). The skeleton holds the rest: one
aiohttp session with its connection pool, submitting a batch concurrently with every answer handed over as
soon as it is known, the guarded flow of one submission (an unknown sender or content that cannot be sent is
refused at once; an exception in one submission fails that one only), the per-sender send counter, closing,
and the verdict-to-result mapping with its backoff for ``RETRY``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import aiohttp
import msgspec

from omnirelay.connectors.base import Answered, Connector, LaterReport, SubmitResult, submit_each
from omnirelay.connectors.counters import CounterSpec
from omnirelay.domain.delivery import Submission
from omnirelay.domain.lifecycle import Outcome

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics

USER_AGENT = "omnirelay/0.1.0"
"""Meta's documents require ``name/x.y.z``; aiohttp's default (``Python/3.11 aiohttp/…``) does not match it."""
MAX_CONCURRENCY = 32
"""Requests in flight at once per connector."""
REQUEST_TIMEOUT_S = 30.0
RETRY_CAP_S = 60.0


class ContentError(ValueError):
    """A step's OMNI content cannot become the provider's message (a field missing, too long, of a kind the
    provider has not); the text says why. Every HTTP connector refuses such a step with it."""


@dataclass(frozen=True)
class Verdict:
    """What a provider's answer means for the step: an :class:`~omnirelay.domain.lifecycle.Outcome`
    with a catalogue error name, and whether the address is not a user of the channel at all."""

    outcome: Outcome
    error: str
    not_a_user: bool = False


#: Verdicts that mean the same with every provider.
NOT_A_USER = Verdict(Outcome.REJECTED, "EC_UNKNOWN_USER", not_a_user=True)
THROTTLED = Verdict(Outcome.RETRY, "EC_TOO_MANY_REQUESTS")
TRANSIENT = Verdict(Outcome.RETRY, "EC_PROVIDER_INTERNAL_ERROR")
BAD_REQUEST = Verdict(Outcome.REJECTED, "EC_BAD_REQUEST")
CONFIGURATION = Verdict(Outcome.REJECTED, "EC_CONFIGURATION_ERROR")
ACCOUNT = Verdict(Outcome.REJECTED, "EC_ACCOUNT_ISSUE")


def backoff(tries: int) -> float:
    """Seconds to wait before submitting a throttled step again: 1, 2, 4, … up to :data:`RETRY_CAP_S`."""
    return float(min(2 ** max(tries - 1, 0), RETRY_CAP_S))


def refused(error: str, detail: str) -> SubmitResult:
    """A submission refused at once (``REJECTED`` with the catalogue ``error``)."""
    return SubmitResult(None, [LaterReport(0.0, Outcome.REJECTED, error, detail=detail)])


def verdict_result(verdict: Verdict, detail: str, tries: int, after_s: float | None = None) -> SubmitResult:
    """The result for ``verdict``: a refusal, or for ``RETRY`` a request to submit again after ``after_s``
    (by default :func:`backoff` of the tries so far)."""
    wait = (backoff(tries) if after_s is None else after_s) if verdict.outcome == Outcome.RETRY else 0.0
    return SubmitResult(None, [LaterReport(wait, verdict.outcome, verdict.error, verdict.not_a_user, detail)])


class Refused(Exception):
    """Raised by :meth:`HttpConnector.prepare`: the submission is refused before anything is sent."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


class Unreachable(Exception):
    """Raised by :meth:`HttpConnector.post`: no answer came (the connection failed or timed out). The request
    may have reached the provider before that."""

    def __init__(self, provider: str, cause: BaseException) -> None:
        super().__init__(f"{provider} unreachable: {cause!r}")
        self.cause = cause


@dataclass(frozen=True)
class Answer:
    """A provider's HTTP answer."""

    status: int
    body: bytes
    headers: Mapping[str, str]


class Named(Protocol):
    """A configured sender: what a step's ``from`` names."""

    @property
    def sender(self) -> str: ...


S = TypeVar("S", bound=Named)

Check = Callable[[Submission, S], SubmitResult | None]
"""A refusal decided for a whole batch at once (LINE's blocked users): the result, or None to go on."""


class HttpConnector(Connector, Generic[S]):
    """The skeleton of a connector that sends each submission as one HTTP request to a provider.

    Subclasses set the class attributes naming the provider and implement :meth:`prepare` and :meth:`send`.
    At most :data:`MAX_CONCURRENCY` sends are in flight at once (a send is everything :meth:`send` does,
    token requests included).
    """

    provider: ClassVar[str]
    """The provider's name in texts: ``"Viber"`` gives ``Viber connector error: …``."""
    sender_kind: ClassVar[str]
    """What a sender is called: ``"Viber bot"`` gives ``no Viber bot 'x' is configured``."""
    send_kind: ClassVar[str] = ""
    """What one request is called in the log (``"<provider> send"`` when empty)."""
    unknown_sender_error: ClassVar[str] = "EC_SENDER_NOT_REGISTERED"
    unreachable_verdict: ClassVar[Verdict] = TRANSIENT
    sends: ClassVar[CounterSpec]
    """The counter of sends by sender and result (accepted, or the outcome of a refusal)."""
    user_agent: ClassVar[str | None] = USER_AGENT
    extra_connections: ClassVar[int] = 0
    """Connections beyond :data:`MAX_CONCURRENCY` (FCM: for token requests made while sends wait)."""
    def __init__(self, senders: Mapping[str, S], metrics: Metrics | None = None) -> None:
        self.log = logging.getLogger(f"omnirelay.{self.provider.lower()}")
        self.senders: dict[str, S] = dict(senders)
        self.metrics = metrics
        self._sends = self.sends.of(metrics) if metrics is not None else None
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(MAX_CONCURRENCY)

    def sender_for(self, name: str | None) -> S | None:
        """The sender a step's ``from`` names; a step without ``from`` uses the only sender, if there is one."""
        if name is None:
            return next(iter(self.senders.values())) if len(self.senders) == 1 else None
        return self.senders.get(name)

    def prepare(self, sub: Submission, sender: S) -> dict[str, Any]:
        """The request body for ``sub``; raises :class:`Refused` when it cannot be sent."""
        raise NotImplementedError

    async def send(self, sender: S, sub: Submission, body: dict[str, Any]) -> SubmitResult:
        """Send ``body`` (with :meth:`post`) and say what the answer means. :class:`Unreachable` becomes a
        ``RETRY`` of :attr:`unreachable_verdict`."""
        raise NotImplementedError

    def http(self) -> aiohttp.ClientSession:
        """The connector's HTTP session (made on first use, again after :meth:`close`)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
                headers={"User-Agent": self.user_agent} if self.user_agent else None,
                connector=aiohttp.TCPConnector(limit=MAX_CONCURRENCY + self.extra_connections),
            )
        return self._session

    async def post(self, url: str, data: bytes | Mapping[str, str], headers: Mapping[str, str] | None = None) -> Answer:
        """POST and read the whole answer; :class:`Unreachable` when none came."""
        try:
            async with self.http().post(url, data=data, headers=headers) as response:
                return Answer(response.status, await response.read(), response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(self.provider, exc) from None

    async def post_json(self, url: str, body: dict[str, Any], headers: Mapping[str, str]) -> Answer:
        """POST ``body`` as JSON with ``headers`` (authentication) added."""
        return await self.post(url, msgspec.json.encode(body), {**headers, "Content-Type": "application/json"})

    async def submit(self, batch: list[Submission], answered: Answered | None = None) -> list[SubmitResult]:
        """Send each submission (concurrently); one result per submission, in order, each also given to
        ``answered`` as soon as its request is answered."""
        return await submit_each(batch, self.submit_one, answered)

    async def submit_one(self, sub: Submission, check: Check[S] | None = None) -> SubmitResult:
        """One submission: its sender, ``check``, its body, its request; never raises."""
        sender = self.sender_for(sub.sender)
        if sender is None:
            known = ", ".join(sorted(self.senders)) or "none"
            detail = f"no {self.sender_kind} {sub.sender!r} is configured (configured: {known})"
            return self._count(sub.sender or "", refused(self.unknown_sender_error, detail))
        held = check(sub, sender) if check is not None else None
        if held is not None:
            return self._count(sender.sender, held)
        try:
            body = self.prepare(sub, sender)
        except Refused as exc:
            return self._count(sender.sender, refused(exc.error, exc.detail))
        try:
            async with self._limit:
                result = await self.send(sender, sub, body)
        except Unreachable as exc:
            # The request may have reached the provider before the connection broke; a retry risks a
            # duplicate (unless the provider takes an idempotency key), which beats losing the message.
            result = verdict_result(self.unreachable_verdict, str(exc), sub.tries)
        except Exception as exc:  # one broken message must not fail the batch
            self.log.exception("%s for message %s failed", self.send_kind or f"{self.provider} send", sub.message_id)
            result = refused("EC_INTERNAL_ERROR", f"{self.provider} connector error: {exc!r}")
        return self._count(sender.sender, result)

    def _count(self, sender: str, result: SubmitResult) -> SubmitResult:
        if self._sends is not None and self.metrics is not None:
            outcome = result.reports[0].outcome.lower() if result.reports else "accepted"
            self.metrics.of(self._sends, sender, outcome).inc()
        return result

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
