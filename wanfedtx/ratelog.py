# -*- test-case-name: tests.unit.gossip.test_gossip_peer_log,tests.unit.test_ratelog -*-
"""Log lines that unauthenticated peers can cause, bounded per reason.

A peer that opens thousands of bad connections must not be able to fill the operator's disk or
bury the lines that matter. ``RateLimitedLog`` lets the first ``burst`` lines of each reason through
in every ``interval``; the rest are counted, and one summary line per reason says how many were
suppressed, written when the interval ends::

    [WARN]  agent.rpc: suppressed similar log lines: reason='tls' count=4971 interval=10s

Every line carries the reason as a structured field (``reason``) so JSON logs can be filtered by
it. Time comes from an injected ``IReactorTime``; tests drive it with ``task.Clock``.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel

SUMMARY = "suppressed similar log lines: reason={reason!r} count={count} interval={interval}s"
DEFAULT_BURST = 10
DEFAULT_INTERVAL = 10.0


@attrs.define
class _Window:
    started: float
    passed: int = 0
    suppressed: int = 0
    level: LogLevel = LogLevel.warn
    timer: IDelayedCall | None = None


@attrs.define
class RateLimitedLog:
    """``emit`` writes through ``logger`` at most ``burst`` lines per reason per ``interval``."""

    logger: Logger
    clock: IReactorTime
    burst: int = DEFAULT_BURST
    interval: float = DEFAULT_INTERVAL
    _windows: dict[str, _Window] = attrs.field(factory=dict, init=False)

    def emit(self, level: LogLevel, reason: str, format: str, **fields: Any) -> bool:
        """Log ``format`` with ``fields`` unless ``reason`` is over its budget; True if written."""
        now = self.clock.seconds()
        window = self._windows.get(reason)
        if window is None or now - window.started >= self.interval:
            if window is not None:
                self._flush(reason)
            window = self._windows[reason] = _Window(started=now)
        if window.passed < self.burst:
            window.passed += 1
            self.logger.emit(level, format, reason=reason, **fields)
            return True
        window.suppressed += 1
        window.level = max(window.level, level, key=_rank)
        if window.timer is None:
            remaining = max(0.0, window.started + self.interval - now)
            window.timer = self.clock.callLater(remaining, self._flush, reason)
        return False

    def warn(self, reason: str, format: str, **fields: Any) -> bool:
        return self.emit(LogLevel.warn, reason, format, **fields)

    def error(self, reason: str, format: str, **fields: Any) -> bool:
        return self.emit(LogLevel.error, reason, format, **fields)

    def info(self, reason: str, format: str, **fields: Any) -> bool:
        return self.emit(LogLevel.info, reason, format, **fields)

    def suppressed(self, reason: str) -> int:
        """Lines of ``reason`` suppressed in the current window (not yet summarised)."""
        window = self._windows.get(reason)
        return window.suppressed if window is not None else 0

    def _flush(self, reason: str) -> None:
        window = self._windows.pop(reason, None)
        if window is None:
            return
        if window.timer is not None and window.timer.active():
            window.timer.cancel()
        window.timer = None
        if window.suppressed:
            self.logger.emit(window.level, SUMMARY, reason=reason, count=window.suppressed,
                             interval=_seconds(self.interval))

    def stop(self) -> None:
        """Write the pending summaries now and cancel their timers (on service stop)."""
        for reason in list(self._windows):
            self._flush(reason)


def _rank(level: LogLevel) -> int:
    return [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error,
            LogLevel.critical].index(level)


def _seconds(interval: float) -> str:
    return f"{interval:g}"
