"""Accounts and API keys as operators manage them: from the config file, the command line, or on first start."""

from __future__ import annotations

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
)
from omnirelay.store.base import Account, Store


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
    if await store.account_by_username(username) is not None:
        raise AccountError(f"account {username!r} already exists")
    password = password or new_password()
    account = await store.create_account(username, hash_password(password), new_webhook_secret(), source)
    api_key = await create_key(store, account) if with_key else None
    return NewCredentials(username, password, api_key)


async def create_key(store: Store, account: Account, source: str = "cli") -> str:
    """A new API key for the account; only its hash is stored, so this is the one time it is seen."""
    key = new_api_key()
    await store.add_key(account.id, key_id(key), key_hash(key), source)
    return key


async def sync_config_accounts(store: Store, declared: list[AccountConfig]) -> None:
    """Make the accounts declared in the config file exist with the declared password and keys."""
    for spec in declared:
        if spec.password_hash is not None and not is_password_hash(spec.password_hash):
            raise AccountError(
                f"account {spec.username!r}: password_hash is not of the form omnirelay "
                "writes (scrypt$...); run `omnirelay accounts hash-password`"
            )
        wanted_hash = spec.password_hash or (hash_password(spec.password) if spec.password else None)
        account = await store.account_by_username(spec.username)
        if account is None:
            account = await store.create_account(
                spec.username, wanted_hash, spec.webhook_secret or new_webhook_secret(), "config"
            )
        elif spec.password is not None or spec.password_hash is not None:
            await store.set_password_hash(account.id, wanted_hash)
        for key in spec.api_keys:
            await store.add_key(account.id, key_id(key), key_hash(key), "config")


async def first_start(store: Store) -> NewCredentials | None:
    """On a store without any account, create one (with an API key) and return its credentials to show once."""
    if await store.accounts():
        return None
    return await add_account(store, "admin", None, with_key=True, source="first-start")
