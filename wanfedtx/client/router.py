# -*- test-case-name: tests.unit.client.test_client_router -*-
"""The servers a client agent may call: Consul's client router manager, fed by LAN gossip.

:class:`ServerManager` is sans-IO. ``handle_event`` takes the LAN pool's serf events: a member
whose tags make it a Consul server (``gossip.pools.parse_server``: ``role=consul``, integer
``port`` and ``vsn``, a ``build`` version, ...) of this datacenter is added on join, replaced on
update and removed on leave, failure or reap; a server of another datacenter is ignored with
Consul's warning. A join (and the ``consul:new-leader`` user event) calls ``on_server_up``,
which lets anti-entropy sync at once.

As Consul's manager: the list starts empty and *offline*; ``find_server`` returns the first
entry; ``notify_failed_server`` moves a server that is still first to the end (when there are
others), so the next call goes elsewhere; a rebalance shuffles the list, pings candidates in
turn (those that do not answer go to the end) and keeps the new order unless nobody answered
(the list is then marked offline and kept as it was). :class:`Rebalancer` runs it on a timer:
first after 120 s, then every 120 s plus up to 60 s of jitter, longer for large pools.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wanfedtx.gossip.pools import ServerInfo, server_members
from wanfedtx.gossip.serf import Event, UserEvent
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.interfaces import ServerAddress
from wanfedtx.services import Service

log = Logger(namespace="agent.client")

NEW_LEADER_EVENT = "consul:new-leader"
REBALANCE_MIN = 120.0
REBALANCE_JITTER = 60.0
NODES_PER_SERVER_PER_SECOND = 64.0
"""Consul's ``clientRPCJitterFraction`` sizing: a rebalance every ``members / (servers * 64)``
seconds at least, so large pools do not all reconnect at once."""


def server_text(s: ServerInfo) -> str:
    """Consul's ``metadata.Server.String()``: ``s1 (Addr: tcp/10.0.0.10:8300) (DC: dc1)``."""
    return f"{s.name} (Addr: tcp/{s.rpc_addr}) (DC: {s.datacenter})"


def address_of(s: ServerInfo) -> ServerAddress:
    """The pool's view of a server: short node name (the cert SAN) and RPC ``host:port``."""
    host = f"[{s.addr}]" if ":" in s.addr else s.addr
    return ServerAddress(s.short_name, f"{host}:{s.port}")


class ServerManager:
    """This datacenter's servers, in the order a client calls them (see module)."""

    def __init__(
        self,
        datacenter: str,
        *,
        rng: random.Random | None = None,
        on_server_up: Callable[[], object] | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.datacenter = datacenter
        self.rng = rng if rng is not None else random.Random()
        self.on_server_up = on_server_up
        self._servers: list[ServerInfo] = []
        self.offline = True
        self._ratelog = RateLimitedLog(log, clock) if clock is not None else None

    # -- gossip events ---------------------------------------------------------------------------

    def handle_event(self, ev: Event) -> None:
        """A LAN serf event (member join/update/leave/failed/reap, user events)."""
        if isinstance(ev, UserEvent):
            if ev.name == NEW_LEADER_EVENT:
                log.info("New leader elected: payload={payload}",
                         payload=bytes(ev.payload).decode("utf-8", "replace"))
                self._server_up()
            return
        for kind, _, srv in server_members(ev):
            if kind == "member-join":
                if srv.datacenter != self.datacenter:
                    log.warn("server has joined the wrong cluster: wrong datacenter: "
                             "server={server} datacenter={dc}", server=server_text(srv),
                             dc=srv.datacenter)
                    continue
                log.info("adding server: server={server}", server=server_text(srv))
                self.add_server(srv)
                self._server_up()
            elif kind == "member-update":
                if srv.datacenter != self.datacenter:
                    continue
                log.info("updating server: server={server}", server=server_text(srv))
                self.add_server(srv)
            elif kind in ("member-leave", "member-failed", "member-reap"):
                if srv.datacenter != self.datacenter or not self.has(srv.name):
                    continue
                log.info("removing server: server={server}", server=server_text(srv))
                self.remove_server(srv.name)

    def _server_up(self) -> None:
        if self.on_server_up is not None:
            self.on_server_up()

    # -- the list ----------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self._servers)

    def add_server(self, srv: ServerInfo) -> None:
        """Replace the entry of the same name, else append; the list is online again."""
        for i, s in enumerate(self._servers):
            if s.name == srv.name:
                self._servers[i] = srv
                break
        else:
            self._servers.append(srv)
        self.offline = False

    def remove_server(self, name: str) -> None:
        self._servers = [s for s in self._servers if s.name != name]

    def servers(self) -> list[ServerInfo]:
        """A copy of the list, in calling order."""
        return list(self._servers)

    def known_servers(self) -> int:
        """``/v1/agent/self`` ``Stats.consul.known_servers``."""
        return len(self._servers)

    def find_server(self) -> ServerInfo | None:
        """The server to call: the first one; None (and Consul's warning) when there is none."""
        if not self._servers:
            if self._ratelog is not None:
                self._ratelog.warn("no-servers", "No servers available")
            return None
        return self._servers[0]

    def notify_failed_server(self, srv: ServerInfo) -> None:
        """A call to ``srv`` failed: if it is still first and others exist, move it last."""
        if len(self._servers) > 1 and self._servers[0].name == srv.name:
            self._servers = [*self._servers[1:], self._servers[0]]

    # -- rebalancing -------------------------------------------------------------------------

    def shuffled(self) -> list[ServerInfo]:
        out = list(self._servers)
        self.rng.shuffle(out)
        return out

    def save_rebalanced(self, candidates: Sequence[ServerInfo]) -> bool:
        """Adopt ``candidates``' order (their head answered a ping), merged with the live list:
        servers removed meanwhile are dropped, servers added meanwhile are appended. Nothing
        changes if the head itself was removed meanwhile. True if saved."""
        live = {s.name: s for s in self._servers}
        if not candidates or candidates[0].name not in live:
            return False
        order = [live[s.name] for s in candidates if s.name in live]
        seen = {s.name for s in order}
        order += [s for s in self._servers if s.name not in seen]
        self._servers = order
        self.offline = False
        return True

    def stop(self) -> None:
        if self._ratelog is not None:
            self._ratelog.stop()


Pinger = Callable[[ServerInfo], Deferred[Any]]


class Rebalancer(Service):
    """Runs :meth:`ServerManager` rebalances on Consul's schedule (see module)."""

    def __init__(
        self,
        manager: ServerManager,
        ping: Pinger,
        clock: IReactorTime,
        lan_members: Callable[[], int] = lambda: 0,
        first_after: float = REBALANCE_MIN,
    ) -> None:
        self.manager = manager
        self.ping = ping
        self.clock = clock
        self.lan_members = lan_members
        self.first_after = first_after
        self._timer: IDelayedCall | None = None
        self._running: Deferred[bool] | None = None

    def startService(self) -> None:
        super().startService()
        self._timer = self.clock.callLater(self.first_after, self._run)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.manager.stop()
        running, self._running = self._running, None
        done: Deferred[None] = Deferred()
        if running is None:
            done.callback(None)
        else:
            running.addBoth(lambda _: done.callback(None))
            running.cancel()
        return done

    def next_interval(self) -> float:
        servers = max(1, self.manager.known_servers())
        spread = self.lan_members() / (servers * NODES_PER_SERVER_PER_SECOND)
        return max(REBALANCE_MIN + self.manager.rng.random() * REBALANCE_JITTER, spread)

    def _run(self) -> None:
        self._timer = None
        running = Deferred.fromCoroutine(self.rebalance())
        self._running = running

        def again(_: object) -> None:
            self._running = None
            if self.running:
                self._timer = self.clock.callLater(self.next_interval(), self._run)

        running.addBoth(again)

    async def rebalance(self) -> bool:
        """One rebalance: True if a server answered and the new order was saved."""
        manager = self.manager
        candidates = manager.shuffled()
        for _ in range(len(candidates)):
            head = candidates[0]
            try:
                await self.ping(head)
            except CancelledError:
                raise
            except Exception as exc:
                log.debug("rebalance: ping failed: server={server} error={error}",
                          server=server_text(head), error=str(exc))
                candidates = [*candidates[1:], head]
                continue
            return manager.save_rebalanced(candidates)
        if candidates:
            log.warn("No healthy servers during rebalance, aborting")
            manager.offline = True
        return False
