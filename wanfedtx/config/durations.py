# -*- test-case-name: tests.unit.config.test_config_durations -*-
"""Go ``time.Duration`` strings: parse (``"1h2m3.5s"``, ``"300ms"``) and format like Go.

Durations are returned as float seconds. Parsing follows Go's ``time.ParseDuration`` grammar: an
optional sign, then one or more ``<decimal number><unit>`` pairs with units ``ns``, ``us`` (``µs``,
``μs``), ``ms``, ``s``, ``m``, ``h``; ``"0"`` alone is allowed. Error texts are Go's.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_UNITS_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_PAIR = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")
_MAX_NS = (1 << 63) - 1


class DurationError(ValueError):
    """A string that is not a Go duration; the message is Go's ``time`` error text."""


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration string into integer nanoseconds."""
    orig = text
    quoted = '"' + orig + '"'
    neg = False
    if text and text[0] in "+-":
        neg = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if text == "":
        raise DurationError(f"time: invalid duration {quoted}")
    total = Decimal(0)
    pos = 0
    while pos < len(text):
        m = _PAIR.match(text, pos)
        if m is None:  # cannot happen: the pattern matches the empty string
            raise DurationError(f"time: invalid duration {quoted}")
        number, unit = m.group(1), m.group(2)
        if number in ("", "."):
            raise DurationError(f"time: invalid duration {quoted}")
        if unit == "":
            raise DurationError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS_NS:
            raise DurationError(f'time: unknown unit "{unit}" in duration {quoted}')
        try:
            value = Decimal(number)
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            raise DurationError(f"time: invalid duration {quoted}") from None
        total += value * _UNITS_NS[unit]
        if total > _MAX_NS:
            raise DurationError(f"time: invalid duration {quoted}")
        pos = m.end()
    ns = int(total)
    return -ns if neg else ns


def parse_duration(text: str) -> float:
    """Parse a Go duration string into float seconds."""
    return parse_duration_ns(text) / 1e9


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits = ""
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        v //= 10
    if printed:
        digits = "." + digits
    return digits, v


def format_duration_ns(ns: int) -> str:
    """Format nanoseconds like Go's ``Duration.String()`` (``30s``, ``5m0s``, ``300ms``)."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    sign = "-" if neg else ""
    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            return f"{sign}{whole}{frac}\u00b5s"
        frac, whole = _fmt_frac(u, 6)
        return f"{sign}{whole}{frac}ms"
    frac, whole = _fmt_frac(u, 9)
    secs = whole % 60
    whole //= 60
    out = f"{secs}{frac}s"
    if whole > 0:
        mins = whole % 60
        whole //= 60
        out = f"{mins}m" + out
        if whole > 0:
            out = f"{whole}h" + out
    return sign + out


def format_duration(seconds: float) -> str:
    """Format float seconds like Go's ``Duration.String()``."""
    return format_duration_ns(round(seconds * 1e9))
