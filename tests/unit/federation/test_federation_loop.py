"""RetryLoop's backoff, and ``wake`` ending it early (a server of another DC just joined)."""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed

from wanfedtx.federation.loop import RetryLoop


def test_backoff_doubles_and_wake_retries_at_once() -> None:
    clock = task.Clock()
    attempts: list[float] = []
    errors: list[BaseException] = []
    outcomes = [RuntimeError("No path to datacenter")] * 3

    def run_once(index: int) -> Deferred[int]:
        attempts.append(clock.seconds())
        if outcomes:
            return fail(outcomes.pop(0))
        return Deferred()  # then it blocks (a blocking query)

    loop = RetryLoop("test", clock, run_once, errors.append)
    loop.startService()
    clock.advance(0)
    assert attempts == [0.0]
    clock.advance(1.9)
    assert len(attempts) == 1  # backing off 2 s
    clock.advance(0.1)
    assert attempts == [0.0, 2.0]
    clock.advance(1.0)  # backing off 4 s now; a path opened:
    loop.wake()
    clock.advance(0)
    assert attempts == [0.0, 2.0, 3.0]
    loop.wake()  # the third failure started an 8 s backoff: woken too
    clock.advance(0)
    assert len(attempts) == 4
    loop.wake()  # not backing off (blocked in run_once): no effect
    clock.advance(100)
    assert len(attempts) == 4 and len(errors) == 3
    loop.stopService()
    assert clock.getDelayedCalls() == []


def test_wake_without_backoff_is_harmless() -> None:
    clock = task.Clock()
    loop = RetryLoop("idle", clock, lambda i: succeed(i + 1), lambda e: None)
    loop.wake()  # before start
    loop.startService()
    loop.wake()
    loop.stopService()
