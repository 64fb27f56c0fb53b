"""TimerQueue (one reactor timer for many deadlines) and BlockingQuery (parked reads)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.defer import CancelledError

from wanfedtx.state import StateStore
from wanfedtx.state.blocking import BlockingQuery
from wanfedtx.state.timers import COMPACT_MIN, TimerQueue


def test_timers_fire_in_order_on_one_reactor_call() -> None:
    clock = task.Clock()
    q = TimerQueue(clock)
    fired: list[str] = []
    q.callLater(3, lambda: fired.append("c"))
    q.callLater(1, lambda: fired.append("a"))
    q.callLater(2, lambda: fired.append("b"))
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0.999)
    assert fired == []
    clock.advance(0.001)
    assert fired == ["a"]
    clock.advance(2)
    assert fired == ["a", "b", "c"]
    assert clock.getDelayedCalls() == [] and len(q) == 0


def test_cancelled_timers_never_fire_and_are_compacted() -> None:
    clock = task.Clock()
    q = TimerQueue(clock)
    fired: list[int] = []
    timers = [q.callLater(10 + i, lambda i=i: fired.append(i)) for i in range(COMPACT_MIN * 3)]
    for t in timers[: COMPACT_MIN * 2 + 1]:
        t.cancel()
        assert not t.active()
    with pytest.raises(RuntimeError):
        timers[0].cancel()
    # Once more than half were dead the heap was rebuilt: it never holds many more dead
    # timers than live ones.
    assert len(q) == COMPACT_MIN - 1
    assert len(q._heap) < COMPACT_MIN * 2 < len(timers)
    clock.advance(10_000)
    assert fired == list(range(COMPACT_MIN * 2 + 1, COMPACT_MIN * 3))


def test_earlier_timer_rearms_and_calls_may_schedule_more() -> None:
    clock = task.Clock()
    q = TimerQueue(clock)
    fired: list[str] = []
    q.callLater(100, lambda: fired.append("late"))
    q.callLater(5, lambda: q.callLater(1, lambda: fired.append("chained")))
    clock.advance(5)
    assert fired == []
    clock.advance(1)
    assert fired == ["chained"]
    clock.advance(94)
    assert fired == ["chained", "late"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_timer_queue_matches_reactor_timers(plan: list[tuple[int, bool]]) -> None:
    """Any mix of delays and cancellations fires the same calls at the same times as
    ``callLater`` on a plain clock."""
    ours, theirs = task.Clock(), task.Clock()
    q = TimerQueue(ours)
    got: list[tuple[float, int]] = []
    want: list[tuple[float, int]] = []
    for i, (delay, cancel) in enumerate(plan):
        a = q.callLater(delay, lambda i=i: got.append((ours.seconds(), i)))
        b = theirs.callLater(delay, lambda i=i: want.append((theirs.seconds(), i)))
        if cancel:
            a.cancel()
            b.cancel()
    for _ in range(60):
        ours.advance(1)
        theirs.advance(1)
    assert got == want


def _store_with_key() -> StateStore:
    s = StateStore()
    s.kvs_set(5, {"Key": "k", "Value": b"1"})
    return s


def test_blocking_query_answer_function_and_wakeup() -> None:
    s = _store_with_key()
    clock = task.Clock()
    q = TimerQueue(clock)
    got: list[Any] = []
    d = BlockingQuery(
        q, random.Random(1), 5, 30, lambda ws: s.kvs_get(ws, "k"), lambda i, r: (i, r["Value"])
    )
    d.addCallback(got.append)
    assert got == [] and len(q) == 1
    assert s.tables["kvs"]._key_watch.get(("id", "k")).subscriber_count == 1
    s.kvs_set(6, {"Key": "k", "Value": b"2"})
    assert got == [(6, b"2")]
    assert len(q) == 0 and clock.getDelayedCalls() == []


def test_blocking_query_cancel_drops_watch_and_timer() -> None:
    s = _store_with_key()
    clock = task.Clock()
    q = TimerQueue(clock)
    d = BlockingQuery(q, random.Random(1), 5, 30, lambda ws: s.kvs_get(ws, "k"))
    failures: list[Any] = []
    d.addErrback(failures.append)
    d.cancel()
    assert failures and failures[0].check(CancelledError)
    assert len(s.tables["kvs"]._key_watch) == 0
    assert len(q) == 0
    s.kvs_set(6, {"Key": "k", "Value": b"2"})  # nothing is woken, nothing breaks
    clock.advance(100)


def test_blocking_query_errors_become_failures() -> None:
    clock = task.Clock()

    def broken(ws: Any) -> tuple[int, Any]:
        raise ValueError("bad query")

    failures: list[Any] = []
    BlockingQuery(clock, random.Random(1), 0, None, broken).addErrback(failures.append)
    assert failures[0].check(ValueError)
    s = _store_with_key()
    BlockingQuery(
        clock, random.Random(1), 0, None, lambda ws: s.kvs_get(ws, "k"), lambda i, r: 1 / 0
    ).addErrback(failures.append)
    assert failures[1].check(ZeroDivisionError)


def test_blocking_query_expiry_answers_with_current_data() -> None:
    s = _store_with_key()
    clock = task.Clock()
    got: list[Any] = []
    BlockingQuery(clock, random.Random(1), 5, 10, lambda ws: s.kvs_get(ws, "k")).addCallback(
        got.append
    )
    s.kvs_set(6, {"Key": "other", "Value": b""})  # another key: still parked
    clock.advance(10 + 10 / 16)
    assert len(got) == 1 and got[0][0] == 6 and got[0][1]["Value"] == b"1"
    assert len(s.tables["kvs"]._key_watch) == 0
