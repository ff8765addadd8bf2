"""The store contract: what the API, engine and notifier need from a database.

Every method is scoped by account where the data belongs to one; another account's object is simply
not found. Implementations: :mod:`omnirelay.store.sqlite` (embedded default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from omnirelay.domain.model import Step


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


@dataclass(frozen=True)
class Stored:
    """What the store answers for one destination of an accepted request."""

    message_id: str
    to_json: bytes
    bulk_id: str | None


class MessageIdConflict(Exception):
    """A client-supplied message id already names a message with different content."""

    def __init__(self, index: int) -> None:
        super().__init__(f"messageId of destination {index} is already used with different content")
        self.index = index


class Store(Protocol):
    """What every store implementation provides."""

    async def close(self) -> None: ...

    # accounts and keys
    async def create_account(self, username: str, password_hash: str | None, webhook_secret: str,
                             source: str) -> Account: ...
    async def remove_account(self, username: str) -> bool: ...
    async def accounts(self) -> list[Account]: ...
    async def account_by_username(self, username: str) -> Account | None: ...
    async def account_by_key_hash(self, key_hash: str) -> Account | None: ...
    async def add_key(self, account_id: int, key_id: str, key_hash: str, source: str) -> None: ...
    async def revoke_key(self, key_id: str) -> bool: ...
    async def keys(self) -> list[ApiKey]: ...
    async def set_password_hash(self, account_id: int, password_hash: str | None) -> None: ...

    # scenarios
    async def create_scenario(self, account_id: int, scenario: ScenarioRecord) -> None: ...
    async def update_scenario(self, account_id: int, scenario: ScenarioRecord) -> bool: ...
    async def delete_scenario(self, account_id: int, key: str) -> bool: ...
    async def scenario(self, account_id: int, key: str) -> ScenarioRecord | None: ...
    async def default_scenario(self, account_id: int) -> ScenarioRecord | None: ...
    async def scenarios(self, account_id: int, is_default: bool | None, limit: int,
                        page: int) -> list[ScenarioRecord]: ...

    # sending
    async def accept(self, account_id: int, payload: bytes, bulk_id: str | None, messages: list[NewMessage],
                     start_at: float, now: float) -> list[Stored]: ...
