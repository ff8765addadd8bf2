"""Accounts and their API keys."""

from __future__ import annotations

from omnirelay.store.base import Account, AccountExists
from omnirelay.store.flow import Dialect, Each, Exec, Flow, One, Rows, Value
from omnirelay.store.rows import account_from_row


def create_account(
    d: Dialect, username: str, password_hash: str | None, webhook_secret: str, source: str, now: float
) -> Flow[Account]:
    """A new account; :class:`AccountExists` when the name is taken."""
    row = yield One(d.q.create_account, username, password_hash, webhook_secret, source, now)
    if row is None:
        raise AccountExists(username)
    return account_from_row(row)


def remove_account(d: Dialect, username: str) -> Flow[bool]:
    """Remove an account and everything it owns; False when there is none of that name."""
    account_id = yield Value(d.q.account_to_remove, username)
    if account_id is None:
        return False
    yield Each(d.q.remove_account, account_id)
    yield Exec(d.q.notify_scenarios)
    return True


def set_config_keys(d: Dialect, account_id: int, keys: dict[str, str], now: float) -> Flow[None]:
    """Make the account's config-file keys exactly ``keys`` (hash -> id), taking a key from another account."""
    yield Exec(d.q.drop_config_keys_but, account_id, list(keys))
    yield Rows(d.q.put_config_key, [(key_id, account_id, key_hash, now) for key_hash, key_id in keys.items()])
