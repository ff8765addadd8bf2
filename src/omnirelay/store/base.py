"""The store contract: what the API, engine and notifier need from a database.

Every method is scoped by account where the data belongs to one; another account's object is simply
not found. Implementations: :mod:`omnirelay.store.sqlite` (embedded default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar

from omnirelay.domain.delivery import Receipt
from omnirelay.domain.inbound import Build, InboundPart
from omnirelay.domain.lifecycle import JobKind
from omnirelay.domain.model import Step
from omnirelay.domain.rollups import Row
from omnirelay.store.inbound import InboundCounts


@dataclass(frozen=True)
class Account:
    """An account: the owner of scenarios, messages and reports."""

    id: int
    username: str
    password_hash: str | None
    webhook_secret: str
    source: str


@dataclass(frozen=True)
class ApiKey:
    """An API key's public side (the key itself is never stored)."""

    id: str
    account_id: int
    username: str
    source: str
    created_at: float


@dataclass(frozen=True)
class AuthToken:
    """A session (IBSSO) or OAuth2 access token's stored side (the token itself is never stored)."""

    account: Account
    kind: str
    """``session`` or ``oauth``."""
    expires_at: float
    idle_seconds: float | None
    """Sessions: each use moves ``expires_at`` to this long after it; None for tokens with a fixed expiry."""


@dataclass(frozen=True)
class ScenarioRecord:
    """A stored scenario."""

    key: str
    name: str
    flow: list[Step]
    default: bool


@dataclass(frozen=True)
class NewMessage:
    """One destination to store: its ids, address and first state."""

    message_id: str
    to_json: bytes
    content_hash: bytes
    state: bytes
    supplied: bool
    address: str | None
    """The destination's main address (phone number without ``+``, else the first one it has): the key of
    capability memory."""
    rejected: bool = False
    """Refused at acceptance (its ``state`` is final): stored finished in status group REJECTED, with no job,
    so it shows in the logs and never gets a report or a webhook."""
    sender: str | None = None
    mcc: str | None = None
    mnc: str | None = None
    """What GET /omni/1/logs filters on (:class:`~omnirelay.domain.reports.LogColumns`), given for scheduled
    messages only: the others get them from the engine's first decision."""


class Stored(NamedTuple):
    """What the store answers for one destination of an accepted request (a tuple: made by the thousand)."""

    message_id: str
    to_json: bytes
    bulk_id: str | None
    duplicate: bool = False
    """The client message id already names a stored message with different content: nothing was stored for this
    destination (Infobip's ``REJECTED_DUPLICATE_MESSAGE_ID``)."""


T = TypeVar("T")


@dataclass(frozen=True)
class LogQuery:
    """Filters of GET /omni/1/logs (already validated)."""

    since: float
    until: float | None = None
    bulk_ids: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    status_group: int | None = None
    channel: str | None = None
    to: str | None = None
    sender: str | None = None
    mcc: str | None = None
    mnc: str | None = None
    limit: int = 50


class Cursor(NamedTuple):
    """A message's place in the console's search order (newest first): acceptance time, then row id."""

    created_at: float
    id: int


@dataclass(frozen=True)
class MessageSearch:
    """The console's message search: the filters of GET /omni/1/logs (``filters.limit`` is the page size), and
    an error name."""

    filters: LogQuery
    error: str | None = None
    """An error name (e.g. ``EC_ABSENT_SUBSCRIBER``) that the message has, as its final error or a step's."""


class Found(NamedTuple):
    """A message the search found, with its place in the order."""

    cursor: Cursor
    view: MessageView


class SchemaError(RuntimeError):
    """The database's schema is not the one this program knows: newer (a newer omnirelay migrated it), or older
    (run ``omnirelay migrate``)."""


class AccountExists(Exception):
    """An account with that username exists already (perhaps just made by another process)."""


class Store(Protocol):
    """What every store implementation provides."""

    async def close(self) -> None: ...
    def subscribe(self, on_jobs: Callable[[], None], on_outbox: Callable[[], None]) -> None:
        """Be told when other processes store jobs or webhook deliveries (a no-op for one process)."""
        ...

    # accounts and keys
    async def create_account(
        self, username: str, password_hash: str | None, webhook_secret: str, source: str
    ) -> Account: ...
    async def remove_account(self, username: str) -> bool: ...
    async def accounts(self) -> list[Account]: ...
    async def account_by_username(self, username: str) -> Account | None: ...
    async def account_by_key_hash(self, key_hash: str) -> Account | None: ...
    async def set_config_keys(self, account_id: int, keys: dict[str, str]) -> None: ...
    async def add_key(self, account_id: int, key_id: str, key_hash: str, source: str) -> None: ...
    async def revoke_key(self, key_id: str) -> bool: ...
    async def keys(self) -> list[ApiKey]: ...
    async def set_password_hash(self, account_id: int, password_hash: str | None) -> None: ...

    # console sessions
    async def add_console_session(
        self, token_hash: str, account_id: int, password_hash: str, expires_at: float, now: float
    ) -> None:
        """Store a console login (``password_hash``: the account's now); drops the sessions expired by ``now``."""
        ...

    async def console_session(self, token_hash: str, now: float) -> Account | None:
        """The account of a live console session: not expired, not logged out, its password unchanged since."""
        ...

    async def end_console_session(self, token_hash: str) -> None:
        """Log a console session out, in every process."""
    # session and OAuth tokens (by their SHA-256)
    async def add_auth_token(
        self,
        account_id: int,
        token_hash: str,
        kind: str,
        now: float,
        expires_at: float,
        idle_seconds: float | None,
        only_one: bool,
    ) -> bool:
        """Store a token's hash (and drop every expired one); with ``only_one``, store nothing and answer
        False while the account holds a live token of that ``kind``, also against another process doing the same."""
        ...

    async def auth_token(self, token_hash: str, now: float) -> AuthToken | None:
        """The live token with this hash, or None (unknown, ended or expired)."""
        ...

    async def extend_auth_token(self, token_hash: str, expires_at: float, now: float) -> None:
        """Move a live token's expiry to ``expires_at`` (never earlier; an expired token stays expired)."""
        ...

    async def remove_auth_tokens(self, account_id: int, kind: str, token_hash: str | None = None) -> int:
        """End the account's tokens of ``kind`` (only the one with ``token_hash`` when given); returns how many."""
        ...

    # scenarios
    async def create_scenario(self, account_id: int, scenario: ScenarioRecord) -> None: ...
    async def update_scenario(self, account_id: int, scenario: ScenarioRecord) -> bool: ...
    async def delete_scenario(self, account_id: int, key: str) -> bool: ...
    async def scenario(self, account_id: int, key: str) -> ScenarioRecord | None: ...
    async def default_scenario(self, account_id: int) -> ScenarioRecord | None: ...
    async def scenarios(
        self, account_id: int, is_default: bool | None, limit: int, page: int
    ) -> list[ScenarioRecord]: ...

    # sending
    async def accept(
        self,
        account_id: int,
        payload: bytes,
        bulk_id: str | None,
        messages: list[NewMessage],
        start_at: float,
        now: float,
    ) -> list[Stored]: ...

    # engine
    async def engine_step(
        self,
        now: float,
        limit: int,
        events: list[tuple[int, bytes]],
        handle: Callable[[list[Work]], tuple[list[Change], T]],
        later: list[tuple[int, JobKind, int, float, bytes]] | None = None,
    ) -> tuple[T, T]:
        """One engine transaction: store the ``later`` jobs, record ``events`` (channel answers: message row id and
        the encoded answer), then claim up to ``limit`` due jobs (steps under way before new messages), and let
        ``handle`` decide; returns ``handle``'s second value for the events' part and for the claimed part.

        The contract with ``handle`` (the engine's decision, ``Engine._decide``):

        - It runs **inside the transaction**, between the reads and the writes of this call: on SQLite on the
          writer thread (not the event loop), on PostgreSQL in the coroutine holding the connection. It must not
          await, do I/O or touch the event loop; it may ask *instant* channels (``InstantConnector.decide_now``,
          pure), which is how the sandbox's answers are stored with the submission they answer.
        - It gets every claimed job's :class:`Work` (the message's state, its capability memory, the job) and
          returns one :class:`Change` per message it changed; the store writes them all with one statement per
          kind of row. The store stamps what it writes itself (jobs' due times, ``done_at``) with ``now``; the
          engine reads the clock once at the start of each call, a moment after ``now``, and decides with that.
        - It is called at most twice a transaction (the events, then the claimed jobs) and may be called again
          for the same jobs after a rollback (a failed commit, a crash): what it decides must follow from what it
          is given. The only thing it keeps is the engine's metrics, which count decisions, not commits.

        A claimed job is deleted in the transaction that stores its consequences: a crash keeps the job (nothing
        happened) or commits its whole effect. Real connectors are called only after the commit, with the
        submissions ``handle`` asked for (stored first as SUBMITTING: never sent twice).
        """
        ...

    async def next_due(self) -> float | None: ...
    async def purge(self, before: float, limit: int) -> int:
        """Remove messages finished before ``before``, with their reports and (once unused) their requests: up to
        ``limit`` row by row, and on PostgreSQL whole generations of them at once (``store/partitions.py``);
        returns how many messages were removed."""
        ...

    async def queue_stats(self, now: float) -> tuple[int, float | None]:
        """How many jobs are due, and when the oldest of them fell due (None when none is)."""
        ...

    async def check_writable(self, now: float) -> None:
        """Commit one small write; raises (one of ``store.errors.UNAVAILABLE``) when the database cannot write."""
        ...

    # reports, logs, webhooks
    async def take_reports(
        self, account_id: int, bulk_id: str | None, message_id: str | None, channel: str | None, limit: int
    ) -> list[bytes]: ...
    async def logs(self, account_id: int, query: LogQuery) -> list[MessageView]: ...
    async def message(self, account_id: int, message_id: str) -> MessageView | None: ...
    async def unindexed_messages(self, limit: int) -> list[tuple[int, bytes, bytes, bytes]]:
        """Up to ``limit`` messages stored before the logs' filter columns existed (their ``mcc`` is ``'?'``):
        (id, to_json, state, payload)."""
        ...

    async def set_log_columns(self, rows: list[tuple[int, str | None, str | None, str | None]]) -> None:
        """Fill the filter columns of such messages: (id, sender, mcc, mnc); a message the engine has changed
        meanwhile (and so filled) is left alone."""
        ...

    async def claim_deliveries(self, now: float, limit: int, lease_s: float) -> list[Delivery]: ...
    async def settle_deliveries(self, done: list[int], retries: list[tuple[int, float | None, str]]) -> None: ...
    async def push_webhooks(self, items: list[tuple[int, str, str, str, bytes]], now: float) -> None:
        """Queue webhook deliveries that do not come from the engine (inbound messages): (account_id, report_id,
        url, content_type, body); a report_id already queued is not queued again."""
        ...

    # connectors
    async def record_receipts(self, receipts: list[Receipt], now: float) -> None:
        """Queue receipts for the engine, each for the step whose submission has its (channel, provider_id); a
        receipt whose submission is not stored yet is held until it is."""
        ...

    async def provider_ids_like(self, channel: str, prefix: str, since: float, until: float, limit: int) -> list[str]:
        """Provider ids of ``channel`` that start with ``prefix``, of submissions stored between ``since`` and
        ``until``, newest first (a Messenger read names a user and a time, not its messages)."""
        ...

    async def set_capabilities(self, rows: list[tuple[int, str, str, float]]) -> None:
        """Set capability memory from outside the engine: (account_id, channel, address, until) rows, an until in
        the past forgetting (a LINE user who blocked, then added again, the channel)."""
        ...

    async def capabilities_of(self, account_id: int, channel: str, addresses: list[str], now: float) -> set[str]:
        """Which of ``addresses`` the capability memory holds for ``channel`` at ``now``."""
        ...

    async def take_tokens(self, key: str, want: int, rate: float, burst: float, now: float) -> int:
        """Take up to ``want`` tokens from the bucket ``key`` (refilled at ``rate`` a second up to ``burst``),
        shared by every process on this database; returns how many were granted."""
        ...

    # inbound SMS
    async def record_inbound(
        self, parts: list[InboundPart], now: float, window_s: float, build: Build
    ) -> InboundCounts:
        """Store received parts of inbound SMS in one transaction: a part whose key was seen within ``window_s``
        is dropped (a resend); a message complete with these parts gets its id and result from ``build``, is
        kept for :meth:`take_inbound` and, when its account has an inbound URL, queued for the notifier."""
        ...

    async def sweep_inbound(self, now: float, part_timeout_s: float, window_s: float, build: Build) -> int:
        """Deliver long messages still missing parts ``part_timeout_s`` after their first came, with the parts
        that came; forget keys seen longer than ``window_s`` ago and messages nobody pulled for 48 hours.
        Returns how many incomplete messages were delivered."""
        ...

    async def take_inbound(self, account_id: int, limit: int, since: float) -> tuple[list[bytes], int]:
        """The account's oldest inbound messages received since ``since``, each returned once (removed as
        taken), and how many remain."""
    # console search
    async def search_messages(
        self, account_id: int, search: MessageSearch, after: Cursor | None = None, before: Cursor | None = None
    ) -> list[Found]:
        """Up to ``search.filters.limit`` matching messages, newest first: the newest ones, or those just older
        than ``after``, or those just newer than ``before`` (keyset paging: a page reads only its own rows)."""
        ...

    async def count_messages(self, account_id: int, search: MessageSearch, cap: int) -> int:
        """How many messages match, counted up to ``cap``: ``cap + 1`` means more than ``cap``."""
    # the console overview
    async def overview(self, account_id: int, span: int, since: float, until: float) -> Overview:
        """The account's rollup rows of width ``span`` for messages accepted in ``[since, until)``."""
        ...

    async def backfill_rollups(self, limit: int, tally: Callable[[list[Backlogged]], list[Row]]) -> int:
        """Add up to ``limit`` messages stored before the rollups existed to them (``tally`` says what each
        adds), in one transaction that also drops them from the backlog; returns how many were taken."""
        ...

    async def rollup_backlog(self) -> int:
        """How many messages are still to be added to the rollups."""
        ...

    async def put_connector_health(self, process: str, rows: list[tuple[str, str, bytes]], now: float) -> None:
        """Store what the connectors of an engine process say about themselves: (connector, channel, JSON),
        replacing that process's earlier snapshot; snapshots older than a day are dropped."""
        ...

    async def connector_health(self) -> list[tuple[str, str, str, float, bytes]]:
        """Every stored snapshot: (process, connector, channel, at, JSON)."""
        ...


@dataclass(frozen=True)
class Work:
    """One thing for the engine to decide: a due job (or a channel's event) and its message."""

    job_id: int | None
    event: bytes
    message: int
    account_id: int
    message_id: str
    bulk_id: str | None
    to_json: bytes
    created_at: float
    state: bytes
    request_id: int
    payload: bytes
    blocked: bytes | None
    """Capability memory of the message's address: JSON ``{channel: until}``, or None."""


@dataclass
class Change:
    """What the engine writes for one message after a decision."""

    message: int
    account_id: int
    state: bytes
    status_group: int
    channel: str | None
    done_at: float | None
    cancel_expiry: bool = False
    columns: tuple[str | None, str | None, str | None] | None = None
    """What GET /omni/1/logs filters on (sender, MCC, MNC) as the message's entry shows it now; None when that
    is what is stored already."""
    jobs: list[tuple[JobKind, int, float, bytes]] = field(default_factory=list)
    """New jobs: (kind, step, due_at, event)."""
    report: tuple[str, str | None, str, bytes] | None = None
    """The final report to be pulled once: (message_id, bulk_id, channel, body)."""
    webhooks: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    """Webhook deliveries: (report_id, url, content_type, body)."""
    remember: list[tuple[str, str, float]] = field(default_factory=list)
    """Capability memory: (channel, address, until)."""
    submitted: list[tuple[int, str, str | None]] = field(default_factory=list)
    """Steps a channel took: (step, channel, provider id)."""
    rollup: list[Row] = field(default_factory=list)
    """What the message adds to the overview's rollups (:mod:`omnirelay.domain.rollups`), written in the same
    transaction."""
    cost: float = 0.0
    """The price of the final report written in this change (0 when none is)."""


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery claimed by the notifier."""

    id: int
    account_id: int
    report_id: str
    url: str
    content_type: str
    body: bytes
    attempts: int


class Backlogged(NamedTuple):
    """A message waiting to be added to the rollups."""

    account_id: int
    created_at: float
    state: bytes
    status_group: int
    done: bool
    """Whether it was final when the rollups were made (its end is added only then; a later one is counted
    when it happens)."""
    to_json: bytes
    payload: bytes


class Overview(NamedTuple):
    """Rollup rows as :meth:`Store.overview` reads them."""

    totals: list[tuple[str, str, int, int, str, int, int, float]]
    """Summed over the range: (kind, channel, step, status group, error, latency bucket, n, cost)."""
    series: list[tuple[int, str, int, int]]
    """Accepted and final counts per bucket: (bucket start, kind, status group, n)."""


@dataclass(frozen=True)
class MessageView:
    """A message as the logs and the message endpoint show it."""

    message_id: str
    bulk_id: str | None
    to_json: bytes
    created_at: float
    state: bytes
    payload: bytes
