"""The calls' deadlines share one timer: expiry order, settling, the timer's lifetime."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from wanfedtx.rpc.deadlines import Deadlines


def make() -> tuple[Clock, Deadlines, list[Any]]:
    clock = Clock()
    return clock, Deadlines(clock), []


def test_a_deadline_expires_once_at_its_time() -> None:
    clock, deadlines, fired = make()
    deadlines.add(10.0, fired.append, "a")
    clock.advance(9.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == ["a"]
    clock.advance(100)
    assert fired == ["a"] and deadlines.waiting == 0 and clock.getDelayedCalls() == []


def test_a_settled_deadline_never_runs_and_the_last_one_stops_the_timer() -> None:
    clock, deadlines, fired = make()
    a = deadlines.add(10.0, fired.append, "a")
    b = deadlines.add(10.0, fired.append, "b")
    assert len(clock.getDelayedCalls()) == 1  # one timer for both
    deadlines.settle(a)
    deadlines.settle(a)  # twice: no effect
    assert deadlines.waiting == 1 and len(clock.getDelayedCalls()) == 1
    deadlines.settle(b)
    assert deadlines.waiting == 0 and clock.getDelayedCalls() == []
    clock.advance(20)
    assert fired == []


def test_a_shorter_timeout_started_later_moves_the_timer_earlier() -> None:
    clock, deadlines, fired = make()
    deadlines.add(300.0, fired.append, "long")
    clock.advance(1)
    deadlines.add(10.0, fired.append, "short")
    clock.advance(10)
    assert fired == ["short"]
    clock.advance(289)
    assert fired == ["short", "long"]
    assert clock.getDelayedCalls() == []


def test_settled_heads_do_not_delay_a_later_deadline() -> None:
    clock, deadlines, fired = make()
    first = deadlines.add(10.0, fired.append, "first")
    clock.advance(5)
    deadlines.add(10.0, fired.append, "second")
    deadlines.settle(first)
    clock.advance(5)  # the timer fires for "first": nothing expires, it re-arms for "second"
    assert fired == []
    clock.advance(5)
    assert fired == ["second"]


def test_an_expiry_that_settles_other_calls_is_safe() -> None:
    clock, deadlines, fired = make()
    entries: list[Any] = []

    def expire(name: str) -> None:
        fired.append(name)
        for e in entries:  # as the pool: closing the connection fails its other calls
            deadlines.settle(e)

    entries.append(deadlines.add(10.0, expire, "a"))
    entries.append(deadlines.add(20.0, expire, "b"))
    clock.advance(10)
    assert fired == ["a"] and deadlines.waiting == 0 and clock.getDelayedCalls() == []


def test_clear_drops_everything() -> None:
    clock, deadlines, fired = make()
    deadlines.add(10.0, fired.append, "a")
    deadlines.clear()
    clock.advance(20)
    assert fired == [] and deadlines.waiting == 0 and clock.getDelayedCalls() == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1.0, 2.5, 10.0]), st.floats(0, 3),
                          st.booleans()), max_size=30))
def test_every_deadline_runs_at_its_own_time_unless_settled(
        plan: list[tuple[float, float, bool]]) -> None:
    """Against a model: a call started at ``t`` with ``timeout`` and not settled expires at the
    first clock time at or after ``t + timeout``; a settled one never runs."""
    clock, deadlines, fired = make()
    expected: dict[int, float] = {}
    visited = [0.0]

    def step(amount: float) -> None:
        clock.advance(amount)
        visited.append(clock.seconds())

    for i, (timeout, gap, settle) in enumerate(plan):
        step(gap)
        entry = deadlines.add(timeout, lambda n: fired.append((n, clock.seconds())), i)
        if settle:
            deadlines.settle(entry)
        else:
            expected[i] = clock.seconds() + timeout
    for _ in range(60):
        step(0.25)
    assert sorted(n for n, _ in fired) == sorted(expected)
    for n, at in fired:
        assert at == min(t for t in visited if t >= expected[n] - 1e-6)
    assert deadlines.waiting == 0 and clock.getDelayedCalls() == []
