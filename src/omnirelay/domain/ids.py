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
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _seq += 1
            if _seq > 0xFFF:
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _seq = int.from_bytes(os.urandom(2)) & 0x3FF
        seq = _seq
    rand = int.from_bytes(os.urandom(8)) & 0x3FFFFFFFFFFFFFFF
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def scenario_key() -> str:
    """A new scenario key: 32 upper-case hexadecimal characters, as Infobip issues them."""
    return secrets.token_hex(16).upper()
