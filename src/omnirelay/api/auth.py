"""Who is calling: ``Authorization: Basic …``, ``App <key>``, ``IBSSO <session token>`` or ``Bearer <OAuth2 token>``,
checked against stored hashes.

A password check costs a deliberately slow scrypt; to keep the accept path fast, a header that checked out
is remembered for a short time under its SHA-256, so the slow check runs once per client, not per request.
A session's idle timer is moved on at most once every ``min(60 s, idle / 10)``, not with every request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from dataclasses import dataclass

from omnirelay.domain.credentials import key_hash, verify_password
from omnirelay.store.base import Account, Store

CACHE_SECONDS = 5.0
#: The token schemes and the kind of stored token each one takes.
TOKEN_KINDS = {"ibsso": "session", "bearer": "oauth"}


@dataclass
class _Hit:
    account: Account
    cached_until: float
    """Monotonic time until which the header is trusted without asking the store."""
    expires_at: float | None = None
    """Tokens: when the token expires (wall clock)."""
    token_hash: str | None = None
    idle_seconds: float | None = None
    """Sessions: how long after its last use the session ends."""


def _storable(text: str) -> bool:
    """Whether a database can compare ``text`` at all (no NUL, no lone surrogate): no account's name has either."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def scheme_of(header: str) -> tuple[str, str]:
    """The header's scheme (lower case) and its credentials."""
    scheme, _, credentials = header.strip().partition(" ")
    return scheme.lower(), credentials.strip()


class Authenticator:
    """Maps an ``Authorization`` header to its account, or None."""

    def __init__(self, store: Store, cache_seconds: float = CACHE_SECONDS) -> None:
        self._store = store
        self._cache: dict[bytes, _Hit] = {}
        self._cache_seconds = cache_seconds

    async def account(self, header: str | None) -> Account | None:
        """The account the header proves, or None."""
        if not header:
            return None
        try:
            raw = header.encode()
        except UnicodeEncodeError:
            # aiohttp keeps a byte that is not UTF-8 as a lone surrogate; no credentials of ours contain one
            return None
        digest = hashlib.sha256(raw).digest()
        hit = self._cache.get(digest)
        if hit is not None and hit.cached_until > time.monotonic():
            if hit.expires_at is None or hit.expires_at > time.time():
                if hit.idle_seconds is not None:
                    await self._keep_alive(hit)
                return hit.account
            del self._cache[digest]
            return None
        scheme, credentials = scheme_of(header)
        hit = None
        if not credentials:
            pass
        elif scheme == "app":
            found = await self._store.account_by_key_hash(key_hash(credentials))
            hit = self._hit(found) if found is not None else None
        elif scheme == "basic":
            found = await self._basic(credentials)
            hit = self._hit(found) if found is not None else None
        elif scheme in TOKEN_KINDS:
            token_hash = key_hash(credentials)
            token = await self._store.auth_token(token_hash, time.time())
            if token is not None and token.kind == TOKEN_KINDS[scheme]:
                hit = self._hit(token.account)
                hit.expires_at, hit.token_hash, hit.idle_seconds = token.expires_at, token_hash, token.idle_seconds
                if token.idle_seconds is not None:
                    await self._keep_alive(hit)
        if hit is None:
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = hit
        return hit.account

    def forget(self, header: str) -> None:
        """Stop trusting ``header`` from the cache (its session or token was just ended here)."""
        self._cache.pop(hashlib.sha256(header.encode()).digest(), None)

    async def password_account(self, username: str, password: str) -> Account | None:
        """The account whose username and password these are, or None."""
        if not _storable(username) or not _storable(password):
            return None
        account = await self._store.account_by_username(username)
        stored = account.password_hash if account is not None else None
        ok = await asyncio.to_thread(verify_password, password, stored)
        return account if ok else None

    def _hit(self, account: Account) -> _Hit:
        return _Hit(account, time.monotonic() + self._cache_seconds)

    async def _keep_alive(self, hit: _Hit) -> None:
        """Move a session's end to ``idle_seconds`` after now, when that moves it by more than the slack."""
        assert hit.idle_seconds is not None and hit.expires_at is not None and hit.token_hash is not None
        now = time.time()
        wanted = now + hit.idle_seconds
        if wanted - hit.expires_at > min(60.0, hit.idle_seconds / 10):
            hit.expires_at = wanted  # before the write: concurrent requests of this session write once
            await self._store.extend_auth_token(hit.token_hash, wanted, now)

    async def _basic(self, credentials: str) -> Account | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except ValueError:  # not base64 (binascii.Error), non-ASCII text, or not UTF-8 once decoded
            return None
        username, sep, password = decoded.partition(":")
        if not sep:
            return None
        return await self.password_account(username, password)
