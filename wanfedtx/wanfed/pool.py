# -*- test-case-name: tests.unit.wanfed.test_wanfed_pool -*-
"""The packet connection pool of the wanfed transport (the reference's ``wanfed/pool.go``, 4.5).

Idle connections are kept per key (the full WAN node name, ``sec.secondary``), several per key
allowed, the last returned is taken first. ``acquire`` takes an idle connection and marks it used
(``last_used = now``, ``failed = False``); ``return_or_close`` puts it back, or closes it when it
was marked failed or the pool is closed. A reaper runs every second and closes connections idle
for ``max_idle`` (2 min). ``close`` closes every idle connection; connections in use are closed
when returned.

Dialing is asynchronous here: ``dial_once`` runs at most one dial per key and lets later packets
wait for it (bounded), where the reference's goroutines each dial their own connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from .constants import GOSSIP_PACKET_MAX_IDLE_TIME, MAX_PENDING_PACKETS, POOL_REAP_INTERVAL
from .errors import ConfigurationError, PacketQueueFull, PoolClosed, WanfedError


class PooledConn(Protocol):
    """What the pool needs from a connection."""

    key: str
    last_used: float
    failed: bool

    def usable(self) -> bool:
        """Still connected and not closing."""

    def close(self) -> None:
        """Close (flushing pending writes)."""

    def when_closed(self) -> Deferred[None]:
        """Fires once the connection is gone."""


Waiter = Callable[[PooledConn | None, str | None], None]


class PacketConnPool:
    """Idle packet connections by key, with a 1 s reaper (see the module docstring)."""

    def __init__(
        self,
        clock: IReactorTime,
        max_idle: float = GOSSIP_PACKET_MAX_IDLE_TIME,
        reap_interval: float = POOL_REAP_INTERVAL,
        max_pending: int = MAX_PENDING_PACKETS,
    ) -> None:
        if max_idle <= 0:
            raise ConfigurationError("wanfed: conn pool needs a max time configured")
        self.clock = clock
        self.max_idle = max_idle
        self.max_pending = max_pending
        self._idle: dict[str, list[PooledConn]] = {}
        self._dialing: dict[str, list[Waiter]] = {}
        self._dials: set[Deferred[Any]] = set()
        self._all: set[PooledConn] = set()
        self.closed = False
        self._reaper = task.LoopingCall(self.reap)
        self._reaper.clock = clock
        self._reaper.start(reap_interval, now=False)

    # -- the reference's operations

    def acquire(self, key: str) -> PooledConn | None:
        """The last idle usable connection for ``key`` (marked used), or None."""
        if self.closed:
            raise PoolClosed()
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if not conns:
                del self._idle[key]
            if conn.usable():
                self._mark_used(conn)
                return conn
            conns = self._idle.get(key)
        return None

    def return_or_close(self, conn: PooledConn) -> None:
        """Back to the idle list; closed instead when marked failed or the pool is closed."""
        if conn.failed or self.closed or not conn.usable():
            conn.close()
            return
        self._idle.setdefault(conn.key, []).append(conn)

    def reap(self) -> None:
        """Close connections idle for ``max_idle`` or longer; drop empty keys."""
        now = self.clock.seconds()
        expired: list[PooledConn] = []
        for key in list(self._idle):
            keep: list[PooledConn] = []
            for conn in self._idle[key]:
                if now - conn.last_used >= self.max_idle or not conn.usable():
                    expired.append(conn)
                else:
                    keep.append(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        for conn in expired:
            conn.close()

    def close(self) -> Deferred[None]:
        """Close idle connections, stop the reaper; fires when every connection of the pool and
        every dial in flight is over (connections dialed after this are closed on arrival)."""
        if not self.closed:
            self.closed = True
            if self._reaper.running:
                self._reaper.stop()
            idle, self._idle = self._idle, {}
            for conns in idle.values():
                for conn in conns:
                    conn.close()
            for key, waiters in list(self._dialing.items()):
                self._dialing[key] = []
                for w in waiters:
                    w(None, str(PoolClosed()))
        waits: list[Deferred[Any]] = [c.when_closed() for c in self._all]
        waits += [observe(d) for d in self._dials]
        if not waits:
            return succeed(None)
        d = DeferredList(waits)
        return d.addCallback(lambda _: None)

    # -- asynchronous dials

    def track(self, conn: PooledConn) -> None:
        """Count ``conn`` as the pool's until it closes (for ``close``)."""
        self._all.add(conn)
        conn.when_closed().addBoth(lambda _: self._forget(conn))

    def _forget(self, conn: PooledConn) -> None:
        self._all.discard(conn)
        conns = self._idle.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._idle[conn.key]

    def dial_once(
        self, key: str, dial: Callable[[], Deferred[PooledConn]], waiter: Waiter
    ) -> None:
        """Give ``waiter`` a connection for ``key``: the one dial in flight for that key, or a new
        dial. ``waiter(conn, None)`` runs with the connection acquired (return it after use);
        ``waiter(None, error)`` when the dial failed or the pool closed."""
        if self.closed:
            raise PoolClosed()
        waiting = self._dialing.get(key)
        if waiting is not None:
            if len(waiting) >= self.max_pending:
                raise PacketQueueFull(
                    f"wanfed: {len(waiting)} packets already wait for the connection to {key}; "
                    "dropping this one (the gateway is slow or unreachable)"
                )
            waiting.append(waiter)
            return
        self._dialing[key] = [waiter]
        try:
            d = dial()
        except BaseException:
            del self._dialing[key]
            raise
        self._dials.add(d)

        def done(conn: PooledConn) -> None:
            self._dials.discard(d)
            waiters = self._dialing.pop(key, [])
            self.track(conn)
            if self.closed:
                conn.close()
                return
            self._mark_used(conn)
            conn.key = key
            self.return_or_close(conn)
            for w in waiters:
                got = self.acquire(key) if not self.closed else None
                if got is None:
                    w(None, str(PoolClosed() if self.closed else _lost(key)))
                else:
                    w(got, None)

        def failed(f: Failure) -> None:
            self._dials.discard(d)
            for w in self._dialing.pop(key, []):
                w(None, f.getErrorMessage())

        d.addCallbacks(done, failed)

    def idle_count(self, key: str | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(v) for v in self._idle.values())

    def _mark_used(self, conn: PooledConn) -> None:
        conn.last_used = self.clock.seconds()
        conn.failed = False


def _lost(key: str) -> Exception:
    return WanfedError(f"wanfed: the new connection to {key} closed before it could be used")


def observe(d: Deferred[Any]) -> Deferred[None]:
    """A Deferred that fires (with None) when ``d`` does, without consuming its result."""
    out: Deferred[None] = Deferred()

    def fire(r: Any) -> Any:
        if not out.called:
            out.callback(None)
        return r

    d.addBoth(fire)
    return out
