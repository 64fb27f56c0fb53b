"""RateLimitedLog: the first lines of a reason pass, the rest are counted and summarised."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel

from wanfedtx.ratelog import RateLimitedLog


def _collect() -> tuple[Logger, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    return Logger(namespace="t", observer=events.append), events


def test_burst_then_one_summary_per_interval() -> None:
    logger, events = _collect()
    clock = Clock()
    rl = RateLimitedLog(logger, clock, burst=3, interval=10.0)
    written = [rl.warn("tls", "bad handshake from {peer}", peer=f"p{i}") for i in range(1000)]
    assert written[:3] == [True] * 3
    assert not any(written[3:])
    assert len(events) == 3
    assert rl.suppressed("tls") == 997
    clock.advance(10)
    assert len(events) == 4
    summary = events[-1]
    assert summary["count"] == 997 and summary["reason"] == "tls"
    assert summary["log_level"] == LogLevel.warn
    assert clock.getDelayedCalls() == []
    # a new window lets lines through again
    assert rl.warn("tls", "bad handshake from {peer}", peer="again")
    assert events[-1]["peer"] == "again"


def test_reasons_have_separate_budgets_and_stop_flushes() -> None:
    logger, events = _collect()
    clock = Clock()
    rl = RateLimitedLog(logger, clock, burst=1, interval=5.0)
    for _ in range(5):
        rl.warn("a", "a")
        rl.error("b", "b")
    assert [e["reason"] for e in events] == ["a", "b"]
    rl.stop()
    summaries = {e["reason"]: e for e in events[2:]}
    assert summaries["a"]["count"] == 4 and summaries["b"]["count"] == 4
    assert summaries["b"]["log_level"] == LogLevel.error
    assert clock.getDelayedCalls() == []


def test_no_summary_without_suppression() -> None:
    logger, events = _collect()
    clock = Clock()
    rl = RateLimitedLog(logger, clock, burst=2, interval=1.0)
    rl.info("x", "one")
    clock.advance(2)
    rl.info("x", "two")
    assert [e["log_format"] for e in events] == ["one", "two"]
