"""Infobip's date form: emitted as ``2015-02-23T16:41:11.833+0000``, accepted with ``+0000``, ``+00:00`` or ``Z``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_INPUT = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)


#: Recent results by millisecond, and the date part of recent seconds. The engine formats the same few
#: instants over and over (a cycle's time, an attempt's start, a capability memory's end), the API rather
#: many instants of a few seconds. Dicts (not a pair of globals) keep it right when the API's and the
#: writer's threads format at the same time.
_by_milli: dict[int, str] = {}
_by_second: dict[int, str] = {}
_CACHE_MAX = 1024


def format_ts(ts: float) -> str:
    """Format a UNIX timestamp the way Infobip does (UTC, milliseconds, ``+0000``)."""
    milli = round(ts * 1_000_000) // 1000  # microseconds rounded as datetime.fromtimestamp rounds them
    text = _by_milli.get(milli)
    if text is None:
        second, millis = divmod(milli, 1000)
        prefix = _by_second.get(second)
        if prefix is None:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            if len(_by_second) >= _CACHE_MAX:
                _by_second.clear()
            _by_second[second] = prefix
        text = f"{prefix}{millis:03d}+0000"
        if len(_by_milli) >= _CACHE_MAX:
            _by_milli.clear()
        _by_milli[milli] = text
    return text


def parse_ts(text: str) -> float:
    """Parse an input date to a UNIX timestamp; ValueError when it is not a date of the accepted forms.

    A date without an offset is taken as UTC.
    """
    m = _INPUT.match(text.strip())
    if m is None:
        raise ValueError("expected a date like 2015-02-23T16:41:11.833+0000")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    tz = UTC
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError("invalid UTC offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    micro = int((frac or "0")[:6].ljust(6, "0"))
    dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tzinfo=tz)
    return dt.timestamp()
