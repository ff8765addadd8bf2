"""Identifiers: time-ordered UUIDv7 message ids and scenario keys."""

from __future__ import annotations

import os
import secrets
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def uuid7() -> str:
    """A UUIDv7 string: time-ordered (so inserts stay append-only in indexes), random in its tail.

    Within one millisecond a 12-bit counter keeps ids from one process strictly increasing.
    """
    return uuid7s(1)[0]


def uuid7s(count: int) -> list[str]:
    """``count`` UUIDv7 strings in increasing order (one lock and one read of randomness for all)."""
    global _last_ms, _seq
    stamps = []
    with _lock:
        now = time.time_ns() // 1_000_000
        for _ in range(count):
            if now <= _last_ms:
                _seq += 1
                if _seq > 0xFFF:
                    _last_ms += 1
                    _seq = 0
            else:
                _last_ms = now
                _seq = int.from_bytes(os.urandom(2)) & 0x3FF
            stamps.append((_last_ms << 16) | (0x7 << 12) | _seq)
    noise = os.urandom(8 * count)
    ids = []
    for i, stamp in enumerate(stamps):
        rand = int.from_bytes(noise[8 * i : 8 * i + 8]) & 0x3FFFFFFFFFFFFFFF
        h = f"{(stamp << 64) | (0b10 << 62) | rand:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def scenario_key() -> str:
    """A new scenario key: 32 upper-case hexadecimal characters, as Infobip issues them."""
    return secrets.token_hex(16).upper()
