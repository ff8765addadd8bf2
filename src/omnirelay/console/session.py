"""Signed session cookies of the console: ``<account id>.<username, base64url>.<expiry>.<HMAC-SHA256>``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "omnirelay_console"
TTL_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    """Who is logged in."""

    account_id: int
    username: str


class Sessions:
    """Issues and checks session cookie values, signed with a secret (by default random per process)."""

    def __init__(self, secret: bytes | None = None, ttl_s: float = TTL_S) -> None:
        self.secret = secret if secret is not None else secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def _sign(self, body: str) -> str:
        return hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()

    def issue(self, account_id: int, username: str, now: float) -> str:
        """A cookie value for this account, valid for ``ttl_s`` from ``now``."""
        name = base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")
        body = f"{account_id}.{name}.{int(now + self.ttl_s)}"
        return f"{body}.{self._sign(body)}"

    def verify(self, value: str | None, now: float) -> Session | None:
        """The session a cookie value names, or None when it is missing, forged, malformed or expired."""
        if not value:
            return None
        body, _, signature = value.rpartition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            account, name, expires = body.split(".")
            if int(expires) < now:
                return None
            username = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
            return Session(int(account), username)
        except ValueError:
            return None
