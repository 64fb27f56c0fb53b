# -*- test-case-name: tests.unit.test_jsondecode -*-
"""JSON decoding of bytes or text that came from outside: strict, and every failure a ValueError.

Where Python's ``json.loads`` differs from the Go decoder the reference's API runs, in ways that
let bad input through as an unexpected error (a 500 and a traceback in the log):

* it raises ``RecursionError``, not ``ValueError``, for arrays or objects nested deeper than the
  interpreter's recursion limit (a request body of 100,000 ``[`` is enough);
* it keeps a ``\\ud800`` escape that is not half of a pair as a lone surrogate in the string,
  which no UTF-8 encoder takes later (msgpack, the answer); Go's decoder puts U+FFFD there;
* it accepts what is not JSON or not a number Go can hold: ``NaN``, ``Infinity`` and
  ``-Infinity``, a float that overflows to infinity (``1e309``) and integers of any size, which
  later fail far from the input (a check TTL of ``NaN``, a duration ``int(inf)``, a raft command
  msgpack cannot encode).

:func:`loads` refuses the nesting and the numbers with ``ValueError`` (integers must fit in 64
bits, signed or unsigned up to 2**64 - 1; floats must be finite) and replaces lone surrogates
with U+FFFD, as Go does. Decoders of request bodies, files a user hands over and answers from
other processes use it instead of ``json.loads``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1  # a uint64 still fits (Go's decoder takes it into a uint64 field)


class TooDeep(ValueError):
    """Arrays or objects nested deeper than the interpreter's recursion limit."""


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"invalid JSON value {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _int64(text: str) -> int:
    value = int(text)  # more than 4,300 digits: ValueError from Python itself
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"number {text} is out of range")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
# in the document: an escape of a surrogate (\ud800-\udfff), or one as a character (bytes read
# with "surrogatepass", or text given as str)
_MAY_HOLD_SURROGATE = re.compile("\\\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def replace_lone_surrogates(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, as Go's decoders do (a pair
    written as two escapes was already joined into one character by Python's decoder)."""
    return _SURROGATE.sub("\ufffd", text)


def _replace_surrogates(value: Any) -> Any:
    """``value`` with :func:`replace_lone_surrogates` applied to its strings and keys."""
    if isinstance(value, str):
        return replace_lone_surrogates(value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


_DECODER = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite_float, parse_int=_int64
)


def loads(data: str | bytes | bytearray) -> Any:
    """Decode one JSON document (bytes as ``json.loads`` takes them: UTF-8, -16 or -32);
    ``ValueError`` for anything that is not strict JSON with numbers Go can hold, or that is
    nested too deeply (``UnicodeDecodeError`` is a ``ValueError`` too)."""
    if isinstance(data, str):
        text = data
    else:
        text = bytes(data).decode(json.detect_encoding(data), "surrogatepass")
    try:
        value = _DECODER.decode(text)
        if _MAY_HOLD_SURROGATE.search(text):
            value = _replace_surrogates(value)
        return value
    except RecursionError:
        raise TooDeep("JSON nested too deeply") from None
