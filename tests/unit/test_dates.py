"""Tests for Infobip's date form (omnirelay.domain.dates)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnirelay.domain.dates import format_ts, parse_ts

WIRE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
# 2015-02-23T16:41:11.833Z, the example of Infobip's documentation
EXAMPLE = datetime(2015, 2, 23, 16, 41, 11, 833000, tzinfo=UTC).timestamp()


def test_format_matches_infobip_example() -> None:
    assert format_ts(EXAMPLE) == "2015-02-23T16:41:11.833+0000"


def test_format_pads_milliseconds_and_uses_utc() -> None:
    assert format_ts(0.0) == "1970-01-01T00:00:00.000+0000"
    assert format_ts(0.007) == "1970-01-01T00:00:00.007+0000"
    assert format_ts(86399.5) == "1970-01-01T23:59:59.500+0000"


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_format_shape(ms: int) -> None:
    assert WIRE.match(format_ts(ms / 1000))


@pytest.mark.parametrize(
    "text",
    [
        "2015-02-23T16:41:11.833+0000",
        "2015-02-23T16:41:11.833+00:00",
        "2015-02-23T16:41:11.833Z",
        "2015-02-23T16:41:11.833z",
        "2015-02-23T16:41:11.833",  # no offset: UTC
        "2015-02-23 16:41:11.833+0000",
        "2015-02-23T18:41:11.833+0200",
        "2015-02-23T18:41:11.833+02:00",
        "2015-02-23T18:41:11.833+02",
        "2015-02-23T15:11:11.833-0130",
        "2015-02-23T15:11:11.833-01:30",
        "2015-02-23T16:41:11,833+0000",
        "2015-02-23T16:41:11.833000+0000",
        "  2015-02-23T16:41:11.833+0000  ",
    ],
)
def test_parse_accepted_forms(text: str) -> None:
    assert parse_ts(text) == pytest.approx(EXAMPLE, abs=1e-6)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-02-23T16:41:11+0000", datetime(2015, 2, 23, 16, 41, 11, tzinfo=UTC)),  # no millis
        ("2015-02-23T16:41:11Z", datetime(2015, 2, 23, 16, 41, 11, tzinfo=UTC)),
        ("2015-02-23T16:41+0000", datetime(2015, 2, 23, 16, 41, tzinfo=UTC)),  # no seconds
        ("2015-02-23T16:41:11.8+0000", datetime(2015, 2, 23, 16, 41, 11, 800000, tzinfo=UTC)),
        ("2015-02-23T16:41:11.123456789Z", datetime(2015, 2, 23, 16, 41, 11, 123456, tzinfo=UTC)),
        ("2015-02-23T00:30:00.000-0130", datetime(2015, 2, 23, 2, 0, tzinfo=UTC)),
        ("2015-02-23T00:30:00.000+0130", datetime(2015, 2, 22, 23, 0, tzinfo=UTC)),
    ],
)
def test_parse_values(text: str, expected: datetime) -> None:
    assert parse_ts(text) == pytest.approx(expected.timestamp(), abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "tomorrow",
        "2015-02-23",
        "2015-02-23T",
        "2015-02-23T16",
        "23.02.2015 16:41:11",
        "2015/02/23T16:41:11Z",
        "2015-02-23T16:41:11.833+0000x",
        "2015-02-23T16:41:11.833 +0000",
        "2015-02-23T16:41:11.833+000",
        "2015-02-23T16:41:11.833+2400",
        "2015-02-23T16:41:11.833+0060",
        "2015-13-23T16:41:11.833+0000",
        "2015-02-30T16:41:11.833+0000",
        "2015-02-23T25:41:11.833+0000",
        "2015-02-23T16:61:11.833+0000",
        "1424709671833",
    ],
)
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ts(text)


# Up to 2100 a float timestamp resolves well under a microsecond, so milliseconds survive exactly.
UNTIL_2100_MS = 4_102_444_800_000


@given(st.integers(min_value=0, max_value=UNTIL_2100_MS))
def test_round_trip(ms: int) -> None:
    text = format_ts(ms / 1000)
    back = parse_ts(text)
    assert round(back * 1000) == ms
    assert format_ts(back) == text


@given(st.floats(min_value=0, max_value=UNTIL_2100_MS / 1000, allow_nan=False, allow_infinity=False))
def test_round_trip_of_any_clock_reading(ts: float) -> None:
    text = format_ts(ts)
    back = parse_ts(text)
    assert format_ts(back) == text
    assert -1e-6 <= ts - back < 0.001 + 1e-6  # milliseconds are cut (after rounding to microseconds)


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9998, 12, 31),
    ),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    st.sampled_from(["{sign}{h:02d}{m:02d}", "{sign}{h:02d}:{m:02d}"]),
)
def test_parse_any_offset(local: datetime, offset_min: int, form: str) -> None:
    local = local.replace(microsecond=local.microsecond // 1000 * 1000)
    sign = "-" if offset_min < 0 else "+"
    h, m = divmod(abs(offset_min), 60)
    text = local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + form.format(sign=sign, h=h, m=m)
    expected = local.replace(tzinfo=UTC).timestamp() - offset_min * 60
    assert parse_ts(text) == pytest.approx(expected, abs=1e-3)
