"""The :class:`~omnirelay.store.base.Store` methods written once, for SQLite and PostgreSQL alike.

Each method runs a flow of :mod:`omnirelay.store.flows` through the database's driver: ``_read`` for a flow
that only reads, ``_write`` for one that writes (one transaction). :class:`~omnirelay.store.sqlite.SqliteStore`
and :class:`~omnirelay.store.postgres.PostgresStore` keep what really differs: how a transaction is run (the
group-commit writer thread, a pool), how other processes are told (polling ``data_version``, LISTEN/NOTIFY),
the accept path's batching, and the scenario cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from omnirelay.domain import rollups
from omnirelay.domain.delivery import Receipt
from omnirelay.domain.inbound import Build, InboundPart
from omnirelay.domain.lifecycle import JobKind
from omnirelay.store.base import (
    Account,
    ApiKey,
    AuthToken,
    Backlogged,
    Change,
    Cursor,
    Delivery,
    Found,
    LogQuery,
    MessageSearch,
    MessageView,
    NewMessage,
    Overview,
    ScenarioRecord,
    Stored,
    Work,
)
from omnirelay.store.flow import Dialect, Flow
from omnirelay.store.flows import (
    accounts,
    capabilities,
    console,
    engine,
    inbound,
    queue,
    reports,
    scenarios,
    sending,
    webhooks,
)
from omnirelay.store.flows import receipts as receipts_flow
from omnirelay.store.inbound import InboundCounts
from omnirelay.store.rows import AcceptItem

T = TypeVar("T")


class SqlStore:
    """What both SQL stores share; a subclass gives the dialect and the two drivers."""

    dialect: Dialect

    async def _read(self, make: Callable[[], Flow[T]]) -> T:
        """Run the flow that ``make()`` gives, which only reads."""
        raise NotImplementedError

    async def _write(self, make: Callable[[], Flow[T]]) -> T:
        """Run the flow that ``make()`` gives in one transaction; answered once it committed. A function making
        the flow, not the flow, since a flow may have to run again: SQLite's writer runs a write again when its
        group transaction failed as a whole (and a generator runs only once)."""
        raise NotImplementedError

    async def _write_statement(self, make: Callable[[], Flow[T]]) -> T:
        """Run a flow that writes with a single statement on PostgreSQL (the statement is its own transaction:
        no round trips for BEGIN and COMMIT around it); on SQLite, as :meth:`_write`."""
        raise NotImplementedError

    def _scenarios_written(self) -> None:
        """Called after a commit that changed scenarios (or removed an account): forget cached scenarios."""

    async def _cached_scenario(
        self, key: tuple[int, str | None], read: Callable[[], Flow[ScenarioRecord | None]]
    ) -> ScenarioRecord | None:
        """The scenario ``key`` (account, scenario key; None: the account's default) as sends read it: a subclass
        answers from its cache when it can trust it, else runs ``read()``. Here: read every time."""
        return await self._read(read)

    def _webhooks_queued(self) -> None:
        """Called after a commit that queued webhook deliveries outside the engine: wake this process's notifier
        (on PostgreSQL the transaction's NOTIFY wakes every process's)."""

    def _jobs_written(self) -> None:
        """Called after a commit that stored jobs from outside the engine (receipts): wake this process's engine
        (PostgreSQL's NOTIFY wakes every worker)."""

    # --- accounts and keys ---------------------------------------------------------------------

    async def create_account(
        self, username: str, password_hash: str | None, webhook_secret: str, source: str
    ) -> Account:
        return await self._write(
            lambda: accounts.create_account(self.dialect, username, password_hash, webhook_secret, source, time.time())
        )

    async def remove_account(self, username: str) -> bool:
        """Remove an account and everything it owns."""
        done = await self._write(lambda: accounts.remove_account(self.dialect, username))
        self._scenarios_written()
        return done

    async def set_config_keys(self, account_id: int, keys: dict[str, str]) -> None:
        """Make the account's config-file keys exactly ``keys`` (hash -> id), taking a key from another account."""
        await self._write(lambda: accounts.set_config_keys(self.dialect, account_id, keys, time.time()))

    async def set_password_hash(self, account_id: int, password_hash: str | None) -> None:
        """Set (or clear) the account's password hash."""
        await self._write(lambda: accounts.set_password_hash(self.dialect, account_id, password_hash))

    async def accounts(self) -> list[Account]:
        """Every account, oldest first."""
        return await self._read(lambda: accounts.accounts(self.dialect))

    async def account_by_username(self, username: str) -> Account | None:
        """The account of that name, or None."""
        return await self._read(lambda: accounts.account_by_username(self.dialect, username))

    async def account_by_key_hash(self, key_hash: str) -> Account | None:
        """The account holding the API key with this hash, or None."""
        return await self._read(lambda: accounts.account_by_key_hash(self.dialect, key_hash))

    async def add_key(self, account_id: int, key_id: str, key_hash: str, source: str) -> None:
        """Give the account an API key; a key hash stored already is left as it is."""
        await self._write(lambda: accounts.add_key(self.dialect, account_id, key_id, key_hash, source, time.time()))

    async def revoke_key(self, key_id: str) -> bool:
        """Remove an API key; False when there is none with that id."""
        return await self._write(lambda: accounts.revoke_key(self.dialect, key_id))

    async def keys(self) -> list[ApiKey]:
        """Every API key with its account's name, oldest first."""
        return await self._read(lambda: accounts.keys(self.dialect))

    # --- console sessions and auth tokens ------------------------------------------------------

    async def add_console_session(
        self, token_hash: str, account_id: int, password_hash: str, expires_at: float, now: float
    ) -> None:
        """Store a console login; drops the sessions expired by ``now``."""
        await self._write(
            lambda: accounts.add_console_session(self.dialect, token_hash, account_id, password_hash, expires_at, now)
        )

    async def console_session(self, token_hash: str, now: float) -> Account | None:
        """The account of a live console session, or None."""
        return await self._read(lambda: accounts.console_session(self.dialect, token_hash, now))

    async def end_console_session(self, token_hash: str) -> None:
        """Log a console session out, in every process."""
        await self._write(lambda: accounts.end_console_session(self.dialect, token_hash))

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
        """Store a token's hash (and drop every expired one); with ``only_one``, False while the account holds a
        live token of that ``kind``."""
        return await self._write(
            lambda: accounts.add_auth_token(
                self.dialect, account_id, token_hash, kind, now, expires_at, idle_seconds, only_one
            )
        )

    async def auth_token(self, token_hash: str, now: float) -> AuthToken | None:
        """The live token with this hash, or None."""
        return await self._read(lambda: accounts.auth_token(self.dialect, token_hash, now))

    async def extend_auth_token(self, token_hash: str, expires_at: float, now: float) -> None:
        """Move a live token's expiry to ``expires_at`` (never earlier)."""
        await self._write(lambda: accounts.extend_auth_token(self.dialect, token_hash, expires_at, now))

    async def remove_auth_tokens(self, account_id: int, kind: str, token_hash: str | None = None) -> int:
        """End the account's tokens of ``kind`` (only the one with ``token_hash`` when given); how many."""
        return await self._write(lambda: accounts.remove_auth_tokens(self.dialect, account_id, kind, token_hash))

    # --- scenarios -----------------------------------------------------------------------------

    async def create_scenario(self, account_id: int, scenario: ScenarioRecord) -> None:
        """Store a new scenario; a new default replaces the account's old one."""
        await self._write(lambda: scenarios.create_scenario(self.dialect, account_id, scenario, time.time()))
        self._scenarios_written()  # after the commit: sends read scenarios from the cache

    async def update_scenario(self, account_id: int, scenario: ScenarioRecord) -> bool:
        """Replace a scenario of the account; False when it has none with that key."""
        done = await self._write(lambda: scenarios.update_scenario(self.dialect, account_id, scenario))
        self._scenarios_written()
        return done

    async def delete_scenario(self, account_id: int, key: str) -> bool:
        """Remove a scenario of the account; False when it has none with that key."""
        done = await self._write(lambda: scenarios.delete_scenario(self.dialect, account_id, key))
        self._scenarios_written()
        return done

    async def scenario(self, account_id: int, key: str) -> ScenarioRecord | None:
        """The account's scenario with that key, or None (cached for sends)."""
        return await self._cached_scenario((account_id, key), lambda: scenarios.scenario(self.dialect, account_id, key))

    async def default_scenario(self, account_id: int) -> ScenarioRecord | None:
        """The account's default scenario, or None (cached for sends)."""
        return await self._cached_scenario(
            (account_id, None), lambda: scenarios.default_scenario(self.dialect, account_id)
        )

    async def scenarios(self, account_id: int, is_default: bool | None, limit: int, page: int) -> list[ScenarioRecord]:
        """A page of the account's scenarios, oldest first."""
        return await self._read(lambda: scenarios.scenarios(self.dialect, account_id, is_default, limit, page))

    # --- sending and the engine ----------------------------------------------------------------

    async def accept(
        self,
        account_id: int,
        payload: bytes,
        bulk_id: str | None,
        messages: list[NewMessage],
        start_at: float,
        now: float,
    ) -> list[Stored]:
        """Store one request's messages; answered once the group transaction holding them committed."""
        return await self._accept(AcceptItem(account_id, payload, bulk_id, messages, start_at, now))

    async def _accept(self, item: AcceptItem) -> list[Stored]:
        """The request in a transaction of its own (SQLite: the writer commits every write queued together;
        collecting requests into one flow per turn of the event loop was measured slower, since requests rarely
        share a turn, and merging the requests of one group transaction made no measurable difference)."""
        (outcome,) = await self._write(lambda: sending.accept(self.dialect, [item]))
        return outcome

    async def engine_step(
        self,
        now: float,
        limit: int,
        events: list[tuple[int, bytes]],
        handle: Callable[[list[Work]], tuple[list[Change], T]],
        later: list[tuple[int, JobKind, int, float, bytes]] | None = None,
    ) -> tuple[T, T]:
        """One engine transaction (see the protocol): ``handle`` runs inside it, on SQLite on the writer thread;
        safe with many workers at once on PostgreSQL (claims skip locked jobs, messages are locked)."""
        return await self._write(lambda: engine.engine_step(self.dialect, now, limit, events, handle, later))

    async def purge(self, before: float, limit: int) -> int:
        """Remove up to ``limit`` messages finished before ``before``, with what belongs to them only."""
        return await self._write(lambda: engine.purge(self.dialect, before, limit, time.time()))

    # --- receipts, capabilities, rate caps -----------------------------------------------------

    async def record_receipts(self, receipts: list[Receipt], now: float) -> None:
        """Queue receipts for the engine by their submission's (channel, provider_id), holding the early ones."""
        await self._write(lambda: receipts_flow.record_receipts(self.dialect, receipts, now))
        self._jobs_written()

    async def provider_ids_like(self, channel: str, prefix: str, since: float, until: float, limit: int) -> list[str]:
        """Provider ids of ``channel`` starting with ``prefix``, stored from ``since`` to ``until``, newest first."""
        return await self._read(
            lambda: capabilities.provider_ids_like(self.dialect, channel, prefix, since, until, limit)
        )

    async def set_capabilities(self, rows: list[tuple[int, str, str, float]]) -> None:
        """Upsert capability memory rows (account_id, channel, address, until)."""
        await self._write(lambda: capabilities.set_capabilities(self.dialect, rows))

    async def capabilities_of(self, account_id: int, channel: str, addresses: list[str], now: float) -> set[str]:
        """Which of ``addresses`` the capability memory holds for ``channel`` at ``now``."""
        return await self._read(lambda: capabilities.capabilities_of(self.dialect, account_id, channel, addresses, now))

    async def take_tokens(self, key: str, want: int, rate: float, burst: float, now: float) -> int:
        """Take up to ``want`` tokens from the bucket ``key``, shared by every process on this database."""
        return await self._write(lambda: capabilities.take_tokens(self.dialect, key, want, rate, burst, now))

    # --- reports, logs, webhooks ---------------------------------------------------------------

    async def take_reports(
        self, account_id: int, bulk_id: str | None, message_id: str | None, channel: str | None, limit: int
    ) -> list[bytes]:
        """The oldest final reports not yet taken, removed as they are taken (each is returned once; concurrent
        pollers skip each other's rows)."""
        return await self._write_statement(
            lambda: reports.take_reports(self.dialect, account_id, bulk_id, message_id, channel, limit)
        )

    async def logs(self, account_id: int, query: LogQuery) -> list[MessageView]:
        """Messages matching the filters, newest first."""
        return await self._read(lambda: reports.logs(self.dialect, account_id, query))

    async def message(self, account_id: int, message_id: str) -> MessageView | None:
        """One message of the account, or None."""
        return await self._read(lambda: reports.message(self.dialect, account_id, message_id))

    async def unindexed_messages(self, limit: int) -> list[tuple[int, bytes, bytes, bytes]]:
        """Messages stored before the logs' filter columns existed: (id, to_json, state, payload)."""
        return await self._read(lambda: reports.unindexed_messages(self.dialect, limit))

    async def set_log_columns(self, rows: list[tuple[int, str | None, str | None, str | None]]) -> None:
        """Fill the filter columns of messages stored before they existed (unless the engine did meanwhile)."""
        await self._write_statement(lambda: reports.set_log_columns(self.dialect, rows))

    async def claim_deliveries(self, now: float, limit: int, lease_s: float) -> list[Delivery]:
        """Webhook deliveries that are due, leased for ``lease_s`` so no other notifier takes them meanwhile; one
        waits while an earlier delivery of the same message is in the outbox, so a message's reports arrive in
        order."""
        return await self._write_statement(lambda: webhooks.claim_deliveries(self.dialect, now, limit, lease_s))

    async def settle_deliveries(self, done: list[int], retries: list[tuple[int, float | None, str]]) -> None:
        """Drop the deliveries the receivers acknowledged; reschedule the others (``None``: tries used up, the row
        is kept and marked, never lost silently)."""
        await self._write(lambda: webhooks.settle_deliveries(self.dialect, done, retries))

    async def push_webhooks(self, items: list[tuple[int, str, str, str, bytes]], now: float) -> None:
        """Queue webhook deliveries that do not come from the engine (inbound messages)."""
        await self._write(lambda: webhooks.push_webhooks(self.dialect, items, now))
        self._webhooks_queued()

    # --- inbound messages ----------------------------------------------------------------------

    async def record_inbound(
        self, parts: list[InboundPart], now: float, window_s: float, build: Build
    ) -> InboundCounts:
        """Store received parts of inbound SMS, dropping those seen within ``window_s`` (see the protocol)."""
        counts = await self._write(lambda: inbound.record_inbound(self.dialect, parts, now, window_s, build))
        if counts.completed:
            self._webhooks_queued()
        return counts

    async def sweep_inbound(self, now: float, part_timeout_s: float, window_s: float, build: Build) -> int:
        """Deliver long messages whose parts stopped coming; forget old keys and unpulled messages."""
        expired = await self._write(lambda: inbound.sweep_inbound(self.dialect, now, part_timeout_s, window_s, build))
        if expired:
            self._webhooks_queued()
        return expired

    async def take_inbound(self, account_id: int, limit: int, since: float) -> tuple[list[bytes], int]:
        """The account's oldest inbound messages, removed as they are taken, and how many remain."""
        return await self._write(lambda: inbound.take_inbound(self.dialect, account_id, limit, since))

    # --- console: search, overview, rollups, connector health ----------------------------------

    async def search_messages(
        self, account_id: int, search: MessageSearch, after: Cursor | None = None, before: Cursor | None = None
    ) -> list[Found]:
        """A page of matching messages, newest first, next to a cursor (keyset paging)."""
        return await self._read(lambda: console.search_messages(self.dialect, account_id, search, after, before))

    async def count_messages(self, account_id: int, search: MessageSearch, cap: int) -> int:
        """How many messages match, up to ``cap`` (``cap + 1``: more)."""
        return await self._read(lambda: console.count_messages(self.dialect, account_id, search, cap))

    async def overview(self, account_id: int, span: int, since: float, until: float) -> Overview:
        """The account's rollup rows of width ``span`` for messages accepted in ``[since, until)``."""
        return await self._read(lambda: console.overview(self.dialect, account_id, span, since, until))

    async def backfill_rollups(self, limit: int, tally: Callable[[list[Backlogged]], list[rollups.Row]]) -> int:
        """Add up to ``limit`` backlogged messages to the rollups, dropping them from the backlog."""
        return await self._write(lambda: console.backfill_rollups(self.dialect, limit, tally))

    async def rollup_backlog(self) -> int:
        """How many messages are still to be added to the rollups."""
        return await self._read(lambda: console.rollup_backlog(self.dialect))

    async def put_connector_health(self, process: str, rows: list[tuple[str, str, bytes]], now: float) -> None:
        """Replace an engine process's snapshot of its connectors; drop snapshots older than a day."""
        await self._write(lambda: console.put_connector_health(self.dialect, process, rows, now))

    async def connector_health(self) -> list[tuple[str, str, str, float, bytes]]:
        """Every stored snapshot of connectors: (process, connector, channel, at, JSON)."""
        return await self._read(lambda: console.connector_health(self.dialect))

    # --- health of the queue -------------------------------------------------------------------

    async def check_writable(self, now: float) -> None:
        """Commit one small write (fails on a standby, a read-only or a full database)."""
        await self._write(lambda: queue.check_writable(self.dialect, now))

    async def queue_stats(self, now: float) -> tuple[int, float | None]:
        """How many jobs are due, and when the oldest of them fell due."""
        return await self._read(lambda: queue.queue_stats(self.dialect, now))

    async def next_due(self) -> float | None:
        """When the earliest job is due, or None when there is none."""
        return await self._read(lambda: queue.next_due(self.dialect))
