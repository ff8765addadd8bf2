"""Accounts and API keys as operators manage them: from the config file, the command line, or on first start."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from omnirelay.config import AccountConfig
from omnirelay.domain.credentials import (
    hash_password,
    is_password_hash,
    key_hash,
    key_id,
    new_api_key,
    new_password,
    new_webhook_secret,
    verify_password,
)
from omnirelay.store.base import Account, AccountExists, Store

log = logging.getLogger("omnirelay.accounts")


class AccountError(Exception):
    """An account operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class NewCredentials:
    """Credentials shown once, when they are made."""

    username: str
    password: str | None
    api_key: str | None


async def add_account(
    store: Store, username: str, password: str | None, with_key: bool, source: str = "cli"
) -> NewCredentials:
    """Create an account; a password is generated when none is given. Optionally also an API key."""
    if not username or ":" in username:
        raise AccountError("a username must be non-empty and must not contain ':'")
    password = password or new_password()
    try:
        account = await store.create_account(username, hash_password(password), new_webhook_secret(), source)
    except AccountExists:
        raise AccountError(f"account {username!r} already exists") from None
    api_key = await create_key(store, account) if with_key else None
    return NewCredentials(username, password, api_key)


async def create_key(store: Store, account: Account, source: str = "cli") -> str:
    """A new API key for the account; only its hash is stored, so this is the one time it is seen."""
    key = new_api_key()
    await store.add_key(account.id, key_id(key), key_hash(key), source)
    return key


async def sync_config_accounts(store: Store, declared: list[AccountConfig]) -> None:
    """Make the config file's accounts exist with exactly the declared password and keys.

    The file is the truth for what it declares: a password or key removed from an account it declares stops
    working, a key moved to another account moves. It never touches an account it does not declare: several
    processes share one database, each with its own config file (or none, as the account commands run), and
    none can tell an account dropped from its file from one declared in another's. So an account leaves only
    by ``omnirelay accounts remove``; a start whose file declares accounts but not this one says so in the log.
    Only the server processes call this (``serve`` and ``api``), never a command that only reads.
    """
    names = {spec.username for spec in declared}
    for spec in declared:
        if spec.password_hash is not None and not is_password_hash(spec.password_hash):
            raise AccountError(
                f"account {spec.username!r}: password_hash is not of the form omnirelay writes (scrypt$...);"
                " run `omnirelay accounts hash-password`"
            )
        account = await store.account_by_username(spec.username)
        if account is None:
            wanted = spec.password_hash or (hash_password(spec.password) if spec.password else None)
            try:
                account = await store.create_account(
                    spec.username, wanted, spec.webhook_secret or new_webhook_secret(), "config"
                )
            except AccountExists:  # another process starting beside this one made it
                account = await store.account_by_username(spec.username)
                assert account is not None
        elif spec.password_hash is not None:
            if spec.password_hash != account.password_hash:
                await store.set_password_hash(account.id, spec.password_hash)
        elif spec.password is not None:
            if not verify_password(spec.password, account.password_hash):
                await store.set_password_hash(account.id, hash_password(spec.password))
        elif account.password_hash is not None:
            await store.set_password_hash(account.id, None)
        await store.set_config_keys(account.id, {key_hash(k): key_id(k) for k in spec.api_keys})
    if not declared:
        return
    for account in await store.accounts():
        if account.source == "config" and account.username not in names:
            log.warning(
                "account %r was declared in a config file but is not in this one: it keeps its credentials"
                " (`omnirelay accounts remove %s` removes it)",
                account.username,
                account.username,
            )


async def first_start(store: Store) -> NewCredentials | None:
    """On a store without any account, create one (with an API key) and return its credentials to show once."""
    if await store.accounts():
        return None
    try:
        return await add_account(store, "admin", None, with_key=True, source="first-start")
    except AccountError:  # another process starting beside this one made it, and shows its credentials
        return None
