"""Accounts, their API keys, console sessions and auth tokens."""

from __future__ import annotations

from omnirelay.store.base import Account, AccountExists, ApiKey, AuthToken
from omnirelay.store.flow import All, Dialect, Each, Exec, Flow, One, Rows, Value
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


def set_password_hash(d: Dialect, account_id: int, password_hash: str | None) -> Flow[None]:
    """Set (or clear) the account's password hash."""
    yield Exec(d.q.set_password_hash, account_id, password_hash)


def accounts(d: Dialect) -> Flow[list[Account]]:
    """Every account, oldest first."""
    rows = yield All(d.q.accounts)
    return [account_from_row(r) for r in rows]


def account_by_username(d: Dialect, username: str) -> Flow[Account | None]:
    """The account of that name, or None."""
    row = yield One(d.q.account_by_username, username)
    return account_from_row(row) if row else None


def account_by_key_hash(d: Dialect, key_hash: str) -> Flow[Account | None]:
    """The account holding the API key with this hash, or None."""
    row = yield One(d.q.account_by_key_hash, key_hash)
    return account_from_row(row) if row else None


def add_key(d: Dialect, account_id: int, key_id: str, key_hash: str, source: str, now: float) -> Flow[None]:
    """Give the account an API key; a key hash stored already is left as it is."""
    yield Exec(d.q.add_key, key_id, account_id, key_hash, source, now)


def revoke_key(d: Dialect, key_id: str) -> Flow[bool]:
    """Remove an API key; False when there is none with that id."""
    removed = yield Exec(d.q.revoke_key, key_id)
    return bool(removed > 0)


def keys(d: Dialect) -> Flow[list[ApiKey]]:
    """Every API key with its account's name, oldest first."""
    rows = yield All(d.q.keys)
    return [ApiKey(*r) for r in rows]


# --- console sessions and auth tokens ----------------------------------------------------------------------


def add_console_session(
    d: Dialect, token_hash: str, account_id: int, password_hash: str, expires_at: float, now: float
) -> Flow[None]:
    """Store a console login, dropping the sessions expired by ``now``."""
    yield Exec(d.q.drop_expired_console_sessions, now)
    yield Exec(d.q.add_console_session, token_hash, account_id, password_hash, expires_at)


def console_session(d: Dialect, token_hash: str, now: float) -> Flow[Account | None]:
    """The account of a live console session (its password unchanged since the login), or None."""
    row = yield One(d.q.console_session, token_hash, now)
    return account_from_row(row) if row else None


def end_console_session(d: Dialect, token_hash: str) -> Flow[None]:
    """Log a console session out."""
    yield Exec(d.q.end_console_session, token_hash)


def add_auth_token(
    d: Dialect,
    account_id: int,
    token_hash: str,
    kind: str,
    now: float,
    expires_at: float,
    idle_seconds: float | None,
    only_one: bool,
) -> Flow[bool]:
    """Store a token's hash, dropping every expired one; with ``only_one``, False (nothing stored) while the
    account holds a live token of that kind."""
    yield Exec(d.q.lock_account_tokens, account_id)
    yield Exec(d.q.drop_expired_auth_tokens, now)
    if only_one and (yield Value(d.q.has_auth_token, account_id, kind)):
        return False
    yield Exec(d.q.add_auth_token, token_hash, account_id, kind, now, expires_at, idle_seconds)
    return True


def auth_token(d: Dialect, token_hash: str, now: float) -> Flow[AuthToken | None]:
    """The live token with this hash, or None."""
    row = yield One(d.q.auth_token, token_hash, now)
    return AuthToken(account_from_row(row), row[5], row[6], row[7]) if row else None


def extend_auth_token(d: Dialect, token_hash: str, expires_at: float, now: float) -> Flow[None]:
    """Move a live token's expiry to ``expires_at``, never earlier."""
    yield Exec(d.q.extend_auth_token, token_hash, expires_at, now)


def remove_auth_tokens(d: Dialect, account_id: int, kind: str, token_hash: str | None) -> Flow[int]:
    """End the account's tokens of ``kind`` (only the one with ``token_hash`` when given); how many."""
    if token_hash is None:
        removed = yield Exec(d.q.remove_auth_tokens, account_id, kind)
    else:
        removed = yield Exec(d.q.remove_auth_token, account_id, kind, token_hash)
    return int(removed)
