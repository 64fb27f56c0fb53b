"""The packet connection pool under a Clock: LIFO reuse, failed conns, 2 min reaper, close."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from wanfedtx.wanfed.errors import ConfigurationError, PacketQueueFull, PoolClosed
from wanfedtx.wanfed.pool import PacketConnPool


class Conn:
    def __init__(self, key: str = "sec.secondary") -> None:
        self.key = key
        self.last_used = 0.0
        self.failed = False
        self.closed = False
        self._closed: list[Deferred[None]] = []

    def usable(self) -> bool:
        return not self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for d in self._closed:
                d.callback(None)

    def when_closed(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.closed:
            d.callback(None)
        else:
            self._closed.append(d)
        return d


def pool() -> tuple[PacketConnPool, Clock]:
    clock = Clock()
    return PacketConnPool(clock), clock


def test_needs_a_max_time() -> None:
    msg = r"^wanfed: conn pool needs a max time configured$"
    with pytest.raises(ConfigurationError, match=msg):
        PacketConnPool(Clock(), max_idle=0)


def test_acquire_takes_the_last_idle_and_marks_it_used() -> None:
    p, clock = pool()
    a, b = Conn(), Conn()
    p.return_or_close(a)
    p.return_or_close(b)
    assert p.idle_count("sec.secondary") == 2
    clock.advance(5)
    b.failed = True
    got = p.acquire("sec.secondary")
    assert got is b and b.last_used == 5 and b.failed is False
    assert p.acquire("sec.secondary") is a
    assert p.acquire("sec.secondary") is None and p.idle_count() == 0
    assert p.acquire("other.dc") is None


def test_failed_conn_is_closed_on_return_and_closed_conns_are_skipped() -> None:
    p, _ = pool()
    a = Conn()
    a.failed = True
    p.return_or_close(a)
    assert a.closed and p.idle_count() == 0
    b, c = Conn(), Conn()
    p.return_or_close(b)
    p.return_or_close(c)
    c.close()  # the peer went away while idle
    assert p.acquire("sec.secondary") is b


def test_reaper_closes_conns_idle_for_two_minutes() -> None:
    p, clock = pool()
    old, fresh = Conn("a.dc2"), Conn("b.dc2")
    p.return_or_close(old)
    clock.advance(60)
    fresh.last_used = clock.seconds()
    p.return_or_close(fresh)
    clock.advance(59)
    assert not old.closed
    clock.advance(1)  # old idle for 120 s: reaped on the next 1 s tick
    assert old.closed and not fresh.closed
    assert p.idle_count("a.dc2") == 0 and p.idle_count("b.dc2") == 1
    clock.advance(60)
    assert fresh.closed and p.idle_count() == 0


def test_close_closes_idle_and_later_returned_conns() -> None:
    p, clock = pool()
    idle, busy = Conn(), Conn()
    p.track(idle)
    p.track(busy)
    p.return_or_close(idle)
    done = p.close()
    assert idle.closed and not done.called  # busy is still in use
    with pytest.raises(PoolClosed, match=r"^wanfed: connection pool is closed$"):
        p.acquire("sec.secondary")
    p.return_or_close(busy)
    assert busy.closed and done.called
    assert clock.getDelayedCalls() == []  # the reaper stopped


def test_dial_once_coalesces_waiters_and_bounds_the_queue() -> None:
    clock = Clock()
    p = PacketConnPool(clock, max_pending=3)
    dials: list[Deferred[Any]] = []
    got: list[tuple[Any, Any]] = []

    def dial() -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        dials.append(d)
        return d

    def waiter(conn: Any, err: Any) -> None:
        got.append((conn, err))
        if conn is not None:
            p.return_or_close(conn)

    for _ in range(3):
        p.dial_once("k.dc2", dial, waiter)
    with pytest.raises(PacketQueueFull):
        p.dial_once("k.dc2", dial, waiter)
    assert len(dials) == 1
    c = Conn("k.dc2")
    dials[0].callback(c)
    assert [g[0] for g in got] == [c, c, c] and p.idle_count("k.dc2") == 1
    # A failing dial reports to every waiter.
    got.clear()
    p.dial_once("z.dc3", dial, waiter)
    p.dial_once("z.dc3", dial, waiter)
    dials[1].errback(RuntimeError("connection refused"))
    assert got == [(None, "connection refused"), (None, "connection refused")]


def test_dial_that_raises_does_not_wedge_the_key() -> None:
    p, _ = pool()

    def bad() -> Deferred[Any]:
        raise ValueError("no")

    with pytest.raises(ValueError):
        p.dial_once("k.dc2", bad, lambda c, e: None)
    with pytest.raises(ValueError):
        p.dial_once("k.dc2", bad, lambda c, e: None)  # dialed again, not queued


def test_close_waits_for_dials_in_flight_and_closes_their_conns() -> None:
    p, _ = pool()
    d: Deferred[Any] = Deferred()
    errors: list[Any] = []
    p.dial_once("k.dc2", lambda: d, lambda c, e: errors.append(e))
    done = p.close()
    assert errors == ["wanfed: connection pool is closed"]
    assert not done.called
    c = Conn("k.dc2")
    d.callback(c)
    assert c.closed and done.called
