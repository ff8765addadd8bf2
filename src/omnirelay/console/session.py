"""Console sessions and their CSRF tokens.

A login is a random token in an ``HttpOnly`` cookie; the store keeps only its SHA-256 (``console_sessions``),
so every process on the database knows the session, and a logout ends it everywhere. Every form that changes
something carries a token derived from the session's own token: a page of another site can neither read the
cookie nor, therefore, compute the form token. The login form (no session yet) pairs a random cookie with the
same value in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "omnirelay_console"
LOGIN_COOKIE = "omnirelay_console_login"
"""The login form's pair value (a double-submit token: no session exists yet)."""
CSRF_FIELD = "csrf"
TTL_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    """Who is logged in, by which cookie token, and the token their forms carry."""

    account_id: int
    username: str
    token: str

    @property
    def csrf(self) -> str:
        """The form token of this session."""
        return csrf_token(self.token)


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a session token: its SHA-256, so a read of the database logs nobody in."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    """The form token of the session with this cookie token (another hash than the stored one)."""
    return hashlib.sha256(b"omnirelay console form\0" + token.encode()).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Whether a submitted token is the expected one (constant-time)."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())
