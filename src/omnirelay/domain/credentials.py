"""Passwords and API keys: only their hashes are stored, and checks run in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """A salted scrypt hash, self-describing: ``scrypt$n$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches the stored hash (constant-time comparison; False for no hash)."""
    if not stored:
        # Spend the same work as a real check, so an unknown user takes as long as a wrong password.
        hashlib.scrypt(password.encode(), salt=b"0" * 16, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


def is_password_hash(text: str) -> bool:
    """Whether ``text`` has the form :func:`hash_password` produces."""
    parts = text.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(parts[1:])


def new_api_key() -> str:
    """A new random API key (256 bits, hex)."""
    return secrets.token_hex(32)


def key_hash(key: str) -> str:
    """The stored form of an API key: keys are random, so SHA-256 suffices (no salt or stretching needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str:
    """The public id of an API key, shown in listings and used to revoke it."""
    return key_hash(key)[:16]


def new_password() -> str:
    """A random password for a generated account."""
    return secrets.token_urlsafe(18)


def new_webhook_secret() -> str:
    """A random secret that signs an account's webhooks."""
    return secrets.token_hex(32)
