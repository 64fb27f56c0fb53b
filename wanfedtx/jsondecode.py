# -*- test-case-name: tests.unit.test_jsondecode -*-
"""JSON decoding of bytes or text that came from outside: every failure is a ``ValueError``.

``json.loads`` raises ``RecursionError``, not ``ValueError``, for arrays or objects nested
deeper than the interpreter's recursion limit (a request body of 100,000 ``[`` is enough), so
a caller that answers bad JSON by catching ``ValueError`` would let such input through as an
unexpected error: a 500 and a traceback in the log. Decoders of request bodies, files a user
hands over and answers from other processes use :func:`loads` instead.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)``; too deep a nesting raises ``ValueError`` like any other bad JSON
    (as do bytes that are not UTF-8: ``UnicodeDecodeError`` is a ``ValueError``)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
