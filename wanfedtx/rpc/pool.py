# -*- test-case-name: tests.unit.rpc.test_rpc_dial,tests.unit.rpc.test_rpc_hold_and_deadlines -*-
"""The RPC connection pool: one rpc-multi connection per ``nodeName:addr``, reaped when idle.

As in the reference, every operation needs the destination node name (it selects the
cert SAN and the gateway SNI), connections are keyed by ``nodeName + ":" + addr`` and use
``RPCMultiplexV2`` (type 4, or ALPN ``consul/rpc-multi`` through a gateway), and server
connections idle for 2 minutes are closed. ``ConnPool`` is a Service: starting it starts the
reaper; stopping it closes every connection and fires when they are closed.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.rpc.constants import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_POOL_MAX_IDLE,
    POOL_REAP_INTERVAL,
    RPCType,
)
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.errors import NodeNameRequired, RPCTimeout
from wanfedtx.rpc.protocol import RPCClientProtocol
from wanfedtx.services import Service
from wanfedtx.state.timers import QueuedTimer, TimerQueue

log = Logger(namespace="wanfedtx.rpc")


def pool_key(node_name: str, addr: str) -> str:
    return node_name + ":" + addr


class _Conn:
    __slots__ = ("key", "last_used", "proto")

    def __init__(self, key: str, proto: RPCClientProtocol, now: float) -> None:
        self.key = key
        self.proto = proto
        self.last_used = now  # when a call last started (answers: proto.last_answered)


class ConnPool(Service):
    """Pooled rpc-multi client connections to servers, keyed by node name and address."""

    def __init__(
        self,
        dialer: Dialer,
        clock: IReactorTime,
        *,
        max_idle: float = DEFAULT_POOL_MAX_IDLE,
        reap_interval: float = POOL_REAP_INTERVAL,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.dialer = dialer
        self.clock = clock
        self.max_idle = max_idle
        self.reap_interval = reap_interval
        self.max_frame_size = max_frame_size
        self._conns: dict[str, _Conn] = {}
        self._dialing: dict[str, list[Deferred[RPCClientProtocol]]] = {}
        self._reaper: LoopingCall | None = None
        # one reactor timer for every call's deadline (a DelayedCall per call costs a heap
        # insertion and a cancellation in the reactor's heap on every forwarded call)
        self._deadlines = TimerQueue(clock)

    # -- public API -------------------------------------------------------------------------

    def rpc(
        self,
        dc: str,
        node_name: str,
        addr: str,
        method: str,
        args: Any = None,
        use_tls: bool = True,
        timeout: float | None = None,
    ) -> Deferred[Any]:
        """Call ``method`` on server ``node_name`` at ``addr`` in ``dc``.

        With a ``timeout``, the dial and the call together must finish within it; otherwise
        the call fails with ``RPCTimeout`` and the pooled connection to that server is closed
        (a server that does not answer is not trusted with the next call)."""
        if not node_name:
            return _failed(NodeNameRequired("RPC"))
        conn = self._conns.get(pool_key(node_name, addr))
        if conn is not None and not conn.proto.is_closed:
            # the common case: a pooled connection, called at once (no Deferred in between)
            conn.last_used = self.clock.seconds()
            d = conn.proto.call(method, args)
        else:
            d = self.acquire(dc, node_name, addr, use_tls).addCallback(
                self._call_when_dialed, node_name, addr, method, args)
        if timeout is not None:
            return self._with_deadline(d, timeout, dc, node_name, addr, method)
        return d

    def _call_when_dialed(self, proto: RPCClientProtocol, node_name: str, addr: str,
                          method: str, args: Any) -> Deferred[Any]:
        conn = self._conns.get(pool_key(node_name, addr))
        if conn is not None:
            conn.last_used = self.clock.seconds()
        return proto.call(method, args)

    def _with_deadline(self, d: Deferred[Any], timeout: float, dc: str, node_name: str,
                       addr: str, method: str) -> Deferred[Any]:
        # Cancelling the call (a client that left a forwarded blocking read) ends its
        # deadline and fails it at once; the answer, if it still comes, is dropped.
        outer: Deferred[Any] = Deferred(lambda _: d.cancel())
        deadline = self._deadlines.callLater(
            timeout, partial(self._expire, outer, timeout, dc, node_name, addr, method))
        d.addBoth(self._settle, outer, deadline)
        return outer

    def _settle(self, result: Any, outer: Deferred[Any], deadline: QueuedTimer) -> None:
        """The call ended: its deadline no longer applies; pass the result on (unless the
        deadline already failed it)."""
        if deadline.active():
            deadline.cancel()
        if not outer.called:
            outer.callback(result)  # a Failure errbacks

    def _expire(self, outer: Deferred[Any], timeout: float, dc: str, node_name: str,
                addr: str, method: str) -> None:
        if outer.called:
            return
        outer.errback(RPCTimeout(method, node_name, dc, timeout))
        conn = self._conns.pop(pool_key(node_name, addr), None)
        if conn is not None:
            conn.proto.close()  # fails the calls still waiting on it

    def ping(self, dc: str, node_name: str, addr: str, use_tls: bool = True) -> Deferred[bool]:
        """``Status.Ping`` on the server; fires True, or fails with the error."""
        if not node_name:
            return _failed(NodeNameRequired("Ping"))
        return self.rpc(dc, node_name, addr, "Status.Ping", None, use_tls).addCallback(
            lambda _: True
        )

    def acquire(
        self, dc: str, node_name: str, addr: str, use_tls: bool = True
    ) -> Deferred[RPCClientProtocol]:
        """The pooled connection for ``node_name:addr``, dialing it if needed."""
        if not node_name:
            return _failed(NodeNameRequired("acquire"))
        key = pool_key(node_name, addr)
        conn = self._conns.get(key)
        if conn is not None and not conn.proto.is_closed:
            d: Deferred[RPCClientProtocol] = Deferred()
            d.callback(conn.proto)
            return d
        waiter: Deferred[RPCClientProtocol] = Deferred()
        waiters = self._dialing.get(key)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._dialing[key] = [waiter]
        self._get_new_conn(dc, node_name, addr, use_tls).addBoth(self._dialed, key)
        return waiter

    def clear_conn(self, node_name: str, addr: str) -> Deferred[None]:
        """Drop and close the pooled connection for ``node_name:addr``, if any."""
        if not node_name:
            raise NodeNameRequired("clearConn")
        conn = self._conns.pop(pool_key(node_name, addr), None)
        if conn is None:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        return conn.proto.close()

    def keys(self) -> list[str]:
        return sorted(self._conns)

    # -- internals --------------------------------------------------------------------------

    def _get_new_conn(self, dc: str, node_name: str, addr: str, use_tls: bool) -> Deferred[Any]:
        if not node_name:
            return _failed(NodeNameRequired("getNewConn"))
        proto = RPCClientProtocol(multi=True, max_frame_size=self.max_frame_size,
                                  clock=self.clock)
        return self.dialer.dial(dc, node_name, addr, RPCType.MULTIPLEX_V2, use_tls, proto)

    def _dialed(self, result: Any, key: str) -> None:
        waiters = self._dialing.pop(key, [])
        if isinstance(result, Failure):
            for w in waiters:
                w.errback(result)
            return
        proto: RPCClientProtocol = result
        conn = _Conn(key, proto, self.clock.seconds())
        self._conns[key] = conn

        def forget(_: None) -> None:
            if self._conns.get(key) is conn:
                del self._conns[key]

        proto.when_closed().addCallback(forget)
        for w in waiters:
            w.callback(proto)

    def reap(self) -> list[str]:
        """Close connections with no call in flight that were idle longer than ``max_idle``."""
        now = self.clock.seconds()
        reaped = []
        for key, conn in list(self._conns.items()):
            last = max(conn.last_used, conn.proto.last_answered)
            if conn.proto.in_flight == 0 and now - last > self.max_idle:
                del self._conns[key]
                conn.proto.close()
                reaped.append(key)
        return reaped

    def startService(self) -> None:
        super().startService()
        self._reaper = LoopingCall(self.reap)
        self._reaper.clock = self.clock
        self._reaper.start(self.reap_interval, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._reaper is not None and self._reaper.running:
            self._reaper.stop()
        self._reaper = None
        conns, self._conns = list(self._conns.values()), {}
        d = DeferredList([c.proto.close() for c in conns])
        return d.addCallback(lambda _: None)


def _failed(exc: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(exc)
    return d
