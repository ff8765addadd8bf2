"""The :class:`~omnirelay.store.base.Store` methods written once, for SQLite and PostgreSQL alike.

Each method runs a flow of :mod:`omnirelay.store.flows` through the database's driver: ``_read`` for a flow
that only reads, ``_write`` for one that writes (one transaction). :class:`~omnirelay.store.sqlite.SqliteStore`
and :class:`~omnirelay.store.postgres.PostgresStore` keep what really differs: how a transaction is run (the
group-commit writer thread, a pool), how other processes are told (polling ``data_version``, LISTEN/NOTIFY),
the accept path's batching, and the scenario cache.
"""

from __future__ import annotations

import time
from typing import TypeVar

from omnirelay.store.base import Account
from omnirelay.store.flow import Dialect, Flow
from omnirelay.store.flows import accounts

T = TypeVar("T")


class SqlStore:
    """What both SQL stores share; a subclass gives the dialect and the two drivers."""

    dialect: Dialect

    async def _read(self, flow: Flow[T]) -> T:
        """Run a flow that only reads."""
        raise NotImplementedError

    async def _write(self, flow: Flow[T]) -> T:
        """Run a flow in one transaction; answered once it committed."""
        raise NotImplementedError

    def _scenarios_written(self) -> None:
        """Called after a commit that changed scenarios (or removed an account): forget cached scenarios."""

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

    # (accept, engine_step, purge, queue_stats, check_writable, next_due: here)

    # --- receipts, capabilities, rate caps -----------------------------------------------------

    # (record_receipts, provider_ids_like, set_capabilities, capabilities_of, take_tokens: here)

    # --- reports, logs, webhooks ---------------------------------------------------------------

    # (take_reports, logs, message, unindexed_messages, set_log_columns, deliveries, push_webhooks: here)

    # --- inbound messages ----------------------------------------------------------------------

    # (record_inbound, sweep_inbound, take_inbound: here)

    # --- console: search, overview, rollups, connector health ----------------------------------

    # (search_messages, count_messages, overview, backfill_rollups, rollup_backlog, connector health: here)
