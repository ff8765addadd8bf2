"""Who is calling: ``Authorization: Basic …`` or ``Authorization: App <key>``, checked against stored hashes.

A password check costs a deliberately slow scrypt; to keep the accept path fast, a header that checked out
is remembered for a short time under its SHA-256, so the slow check runs once per client, not per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time

from omnirelay.domain.credentials import key_hash, verify_password
from omnirelay.store.base import Account, Store

CACHE_SECONDS = 5.0


class Authenticator:
    """Maps an ``Authorization`` header to its account, or None."""

    def __init__(self, store: Store, cache_seconds: float = CACHE_SECONDS) -> None:
        self._store = store
        self._cache: dict[bytes, tuple[Account, float]] = {}
        self._cache_seconds = cache_seconds

    async def account(self, header: str | None) -> Account | None:
        """The account the header proves, or None."""
        if not header:
            return None
        token = hashlib.sha256(header.encode()).digest()
        hit = self._cache.get(token)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        account: Account | None = None
        if scheme.lower() == "app" and credentials:
            account = await self._store.account_by_key_hash(key_hash(credentials))
        elif scheme.lower() == "basic" and credentials:
            account = await self._basic(credentials)
        if account is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (account, now + self._cache_seconds)
        return account

    async def _basic(self, credentials: str) -> Account | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, sep, password = decoded.partition(":")
        if not sep:
            return None
        account = await self._store.account_by_username(username)
        stored = account.password_hash if account is not None else None
        ok = await asyncio.to_thread(verify_password, password, stored)
        return account if ok else None
