"""Test support for log assertions: collect the events logged through Twisted's global log
publisher while a block runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.logger import globalLogPublisher


@contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Every event logged inside the ``with`` block, in order."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)
