"""Go duration strings: parsing and Go-style formatting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanfedtx.config.durations import (
    DurationError,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h2m3.5s", 3723.5),
        ("300ms", 0.3),
        ("-1s", -1.0),
        ("0", 0.0),
        ("+5s", 5.0),
        ("1.5h", 5400.0),
        ("2h45m", 9900.0),
        (".5s", 0.5),
        ("1us", 1e-6),
        ("1\u00b5s", 1e-6),
        ("10ns", 1e-8),
        ("1m30s", 90.0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("30", 'time: missing unit in duration "30"'),
        ("5x", 'time: unknown unit "x" in duration "5x"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("-", 'time: invalid duration "-"'),
        (".s", 'time: invalid duration ".s"'),
        ("s", 'time: invalid duration "s"'),
        ("9999999999h", 'time: invalid duration "9999999999h"'),
    ],
)
def test_parse_errors_are_gos(text: str, message: str) -> None:
    with pytest.raises(DurationError) as exc:
        parse_duration_ns(text)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (30_000_000_000, "30s"),
        (300_000_000, "300ms"),
        (300_000_000_000, "5m0s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-1_000_000_000, "-1s"),
        (1_500, "1.5\u00b5s"),
        (7, "7ns"),
    ],
)
def test_format_like_go(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text


@given(st.integers(min_value=-(2**62), max_value=2**62))
def test_format_then_parse_round_trips(ns: int) -> None:
    assert parse_duration_ns(format_duration_ns(ns)) == ns
