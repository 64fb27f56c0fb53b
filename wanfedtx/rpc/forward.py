# -*- test-case-name: tests.unit.rpc.test_rpc_dial,tests.unit.rpc.test_rpc_hold_and_deadlines -*-
"""Forwarding RPCs to this datacenter's leader and to servers of other datacenters.

``Forwarder.forward_to_leader`` asks an ``ILeaderProvider`` (consensus; ``StaticLeader`` is a
working single-server stand-in configured with the one server) and calls the leader through the
pool. ``Forwarder.forward_dc`` asks an ``IRouter`` for the target DC's servers, counts the
``rpc.cross-dc`` metric (label ``datacenter``) and calls the first server through the pool; the
pool's dialer goes through a mesh gateway when federation via gateways is on. A server that
cannot be dialed (the request was never sent) is skipped for the next one of that datacenter.

Every forwarded call has a deadline: the blocking wait it asks for (``MaxQueryTime``, default
5 minutes, at most 10, plus the 1/16 jitter a server may add) plus ``REPLY_BOUND`` (10 s). A call
past it fails with ``RPCTimeout`` and its pooled connection is closed, so a server that stopped
answering (SIGSTOP, a half-open link) costs one deadline, not a hung request per caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.rpc.errors import DialError, NoDCPath, NoLeader
from wanfedtx.rpc.interfaces import ILeaderProvider, IRouter, ServerAddress
from wanfedtx.rpc.pool import ConnPool

REPLY_BOUND = 10.0
DEFAULT_QUERY_TIME = 300.0
MAX_QUERY_TIME = 600.0
NANOSECOND = 1e-9


def call_deadline(args: Any) -> float:
    """Seconds a forwarded call may take: its blocking wait (with jitter) plus ``REPLY_BOUND``."""
    wait = 0.0
    if isinstance(args, Mapping):
        min_index = args.get("MinQueryIndex") or 0
        if isinstance(min_index, int) and min_index > 0:
            max_time = args.get("MaxQueryTime") or 0
            wait = (max_time * NANOSECOND if isinstance(max_time, int) and max_time > 0
                    else DEFAULT_QUERY_TIME)
            wait = min(wait, MAX_QUERY_TIME)
    return wait + wait / 16 + REPLY_BOUND


class StaticLeader:
    """``ILeaderProvider`` for a configuration with one fixed server (it is the leader)."""

    def __init__(self, leader: ServerAddress, local_name: str) -> None:
        self._leader = leader
        self._local_name = local_name

    def is_leader(self) -> bool:
        return self._leader.name == self._local_name

    def leader(self) -> ServerAddress | None:
        return self._leader


class StaticRouter:
    """``IRouter`` over a fixed ``{dc: [ServerAddress, ...]}`` table (static configuration)."""

    def __init__(self, servers: Mapping[str, Sequence[ServerAddress]]) -> None:
        self._servers = {dc: list(s) for dc, s in servers.items()}

    def servers_for_dc(self, dc: str) -> Sequence[ServerAddress]:
        return self._servers.get(dc, [])

    def datacenters(self) -> Sequence[str]:
        return sorted(dc for dc, servers in self._servers.items() if servers)


class Forwarder:
    """Sends RPCs to where they must run: the local leader or another datacenter."""

    def __init__(
        self,
        pool: ConnPool,
        datacenter: str,
        leader: ILeaderProvider,
        router: IRouter,
        metrics: Registry = REGISTRY,
    ) -> None:
        self.pool = pool
        self.datacenter = datacenter
        self.leader = leader
        self.router = router
        self.cross_dc = metrics.counter(
            "rpc.cross-dc", "RPCs forwarded to another datacenter", ("datacenter",)
        )

    def datacenters(self) -> list[str]:
        """Every datacenter reachable from here, this one included, sorted."""
        return sorted({self.datacenter, *self.router.datacenters()})

    def forward_to_leader(self, method: str, args: Any = None) -> Deferred[Any]:
        """Call ``method`` on this datacenter's leader (the caller checks ``is_leader``)."""
        server = self.leader.leader()
        if server is None:
            d: Deferred[Any] = Deferred()
            d.errback(NoLeader())
            return d
        return self.pool.rpc(self.datacenter, server.name, server.addr, method, args,
                             timeout=call_deadline(args))

    def forward_dc(self, dc: str, method: str, args: Any = None) -> Deferred[Any]:
        """Call ``method`` on a server of datacenter ``dc``: the router's servers in order,
        the next one only when the call could not reach the previous one (a ``DialError``)."""
        servers = self.router.servers_for_dc(dc)
        if not servers:
            d: Deferred[Any] = Deferred()
            d.errback(NoDCPath())
            return d
        self.cross_dc.inc(datacenter=dc)
        return self._try(dc, list(servers), 0, method, args, call_deadline(args))

    def _try(self, dc: str, servers: list[ServerAddress], i: int, method: str, args: Any,
             timeout: float) -> Deferred[Any]:
        server = servers[i]
        d = self.pool.rpc(dc, server.name, server.addr, method, args, timeout=timeout)
        if i + 1 < len(servers):
            d.addErrback(self._next_server, dc, servers, i + 1, method, args, timeout)
        return d

    def _next_server(self, failure: Failure, dc: str, servers: list[ServerAddress], i: int,
                     method: str, args: Any, timeout: float) -> Deferred[Any]:
        failure.trap(DialError)
        return self._try(dc, servers, i, method, args, timeout)
