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

from omnirelay.connectors.base import Receipt
from omnirelay.store.base import Account, Change, NewMessage, Stored, Work
from omnirelay.store.flow import Dialect, Flow
from omnirelay.store.flows import accounts, engine, sending
from omnirelay.store.flows import receipts as receipts_flow
from omnirelay.store.rows import AcceptItem

T = TypeVar("T")


class SqlStore:
    """What both SQL stores share; a subclass gives the dialect and the two drivers."""

    dialect: Dialect

    async def _read(self, flow: Flow[T]) -> T:
        """Run a flow that only reads."""
        raise NotImplementedError

    async def _write(self, flow: Flow[T] | Callable[[], Flow[T]]) -> T:
        """Run a flow in one transaction; answered once it committed. Given as a function making the flow, it
        can run again (SQLite's writer runs a write again when its group transaction failed as a whole)."""
        raise NotImplementedError

    def _scenarios_written(self) -> None:
        """Called after a commit that changed scenarios (or removed an account): forget cached scenarios."""

    def _jobs_written(self) -> None:
        """Called after a commit that stored jobs from outside the engine (receipts): wake this process's engine
        (PostgreSQL's NOTIFY wakes every worker)."""

    # --- accounts and keys ---------------------------------------------------------------------

    async def create_account(
        self, username: str, password_hash: str | None, webhook_secret: str, source: str
    ) -> Account:
        return await self._write(
            accounts.create_account(self.dialect, username, password_hash, webhook_secret, source, time.time())
        )

    async def remove_account(self, username: str) -> bool:
        """Remove an account and everything it owns."""
        done = await self._write(accounts.remove_account(self.dialect, username))
        self._scenarios_written()
        return done

    async def set_config_keys(self, account_id: int, keys: dict[str, str]) -> None:
        """Make the account's config-file keys exactly ``keys`` (hash -> id), taking a key from another account."""
        await self._write(accounts.set_config_keys(self.dialect, account_id, keys, time.time()))

    # (accounts and keys: more here)

    # --- console sessions and auth tokens ------------------------------------------------------

    # (sessions and tokens: here)

    # --- scenarios -----------------------------------------------------------------------------

    # (scenarios: here)

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
        later: list[tuple[int, str, int, float, bytes]] | None = None,
    ) -> tuple[T, T]:
        """One engine transaction (see the protocol): ``handle`` runs inside it, on SQLite on the writer thread;
        safe with many workers at once on PostgreSQL (claims skip locked jobs, messages are locked)."""
        return await self._write(lambda: engine.engine_step(self.dialect, now, limit, events, handle, later))

    async def purge(self, before: float, limit: int) -> int:
        """Remove up to ``limit`` messages finished before ``before``, with what belongs to them only."""
        return await self._write(lambda: engine.purge(self.dialect, before, limit, time.time()))

    # (queue_stats, check_writable, next_due: here)

    # --- receipts, capabilities, rate caps -----------------------------------------------------

    async def record_receipts(self, receipts: list[Receipt], now: float) -> None:
        """Queue receipts for the engine by their submission's (channel, provider_id), holding the early ones."""
        await self._write(lambda: receipts_flow.record_receipts(self.dialect, receipts, now))
        self._jobs_written()

    # (record_receipts, provider_ids_like, set_capabilities, capabilities_of, take_tokens: here)

    # --- reports, logs, webhooks ---------------------------------------------------------------

    # (take_reports, logs, message, unindexed_messages, set_log_columns, deliveries, push_webhooks: here)

    # --- inbound messages ----------------------------------------------------------------------

    # (record_inbound, sweep_inbound, take_inbound: here)

    # --- console: search, overview, rollups, connector health ----------------------------------

    # (search_messages, count_messages, overview, backfill_rollups, rollup_backlog, connector health: here)
