# -*- test-case-name: tests.unit.agent.test_agent_gossip_router -*-
"""The agent's serf pools: LAN for every agent, WAN for servers, joins, flood-join and the router.

``AgentGossip`` (a ``MultiService``) is built from a ``RuntimeConfig``:

* LAN pool on ``serf_bind_addr_lan`` (advertised as ``serf_advertise_addr_lan``) named
  ``node_name`` with the tags of ``agent.member.lan_tags``;
* servers with a WAN port: WAN pool on ``serf_bind_addr_wan`` named ``<node>.<dc>`` with Consul's
  server tags; with ``connect.enable_mesh_gateway_wan_federation`` the WAN memberlist
  requires node names and skips TCP fallback pings to other DCs (``pools.wan_memberlist_config``);
* ``encrypt`` key (and ``encrypt_verify_*``) on both pools; the ``gossip_lan`` / ``gossip_wan``
  tuning keys over memberlist's LAN / WAN defaults;
* ``start_join`` / ``start_join_wan``: one attempt at start, failure calls ``on_join_exhausted``
  (the agent shuts down, as ``consul agent`` exits); ``retry_join`` / ``retry_join_wan`` every
  ``retry_interval(_wan)`` until one join succeeds, with Consul's retry-join log lines, and
  ``retry_max(_wan)`` exhausted calls ``on_join_exhausted`` (Consul's ``retryJoinCh``). Neither
  WAN join runs with mesh-gateway federation (config validation refuses them anyway);
* flood-join: every alive LAN server with a ``wan_join_port`` tag is joined into the WAN pool (on
  LAN join/update events and every ``flood_interval``, 60 s);
* ``router``: an ``IRouter`` (``wanfedtx.rpc.interfaces``) of alive servers per DC, fed by the WAN
  pool (every DC) and the LAN pool (this DC).

``stopService`` leaves gracefully (serf leave intent, then memberlist leave) bounded by
``leave_timeout`` unless ``leave_on_stop`` was turned off, then fires when every gossip socket is
closed.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Sequence

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from wanfedtx.agent.discover import Discover, discovery_methods
from wanfedtx.agent.errors import AgentError
from wanfedtx.agent.member import acls_tag, lan_tags
from wanfedtx.config.runtime import GossipConfig, RuntimeConfig
from wanfedtx.gossip.config import MemberlistConfig, lan_config
from wanfedtx.gossip.errors import GossipError
from wanfedtx.gossip.interfaces import IGossipTransport
from wanfedtx.gossip.pools import (
    Router,
    flood_join_address,
    lan_merge_check,
    server_tags,
    wan_member_name,
    wan_memberlist_config,
    wan_merge_check,
)
from wanfedtx.gossip.security import Keyring
from wanfedtx.gossip.serf import Event, Member, MemberEvent, MemberStatus, Serf, SerfConfig
from wanfedtx.gossip.service import SerfService
from wanfedtx.gossip.transport import NetTransport
from wanfedtx.reactors import ReactorLike
from wanfedtx.rpc.interfaces import ServerAddress
from wanfedtx.services import MultiService

log = Logger(namespace="agent")

WAN_JOIN_DISABLED = "WAN join is disabled when wan federation via mesh gateways is enabled"
DEFAULT_LEAVE_TIMEOUT = 10.0
FLOOD_INTERVAL = 60.0  # Consul's serf flooder also re-checks every minute


class GossipRouter:
    """``IRouter`` over the gossip pools: WAN servers of every DC, LAN servers of this DC."""

    def __init__(self, datacenter: str) -> None:
        self.datacenter = datacenter
        self.wan = Router()
        self.lan = Router()

    def servers_for_dc(self, dc: str) -> Sequence[ServerAddress]:
        servers = self.wan.servers(dc)
        if dc == self.datacenter and not servers:
            servers = self.lan.servers(dc)
        return [ServerAddress(s.short_name, s.rpc_addr) for s in servers]

    def datacenters(self) -> Sequence[str]:
        """DCs with an alive server, by name (no network coordinates, so no RTT ordering)."""
        lan = [self.datacenter] if self.lan.servers(self.datacenter) else []
        return sorted({*self.wan.datacenters(), *lan})


def _keyring(rt: RuntimeConfig) -> Keyring | None:
    if not rt.encrypt_key:
        return None
    try:
        key = base64.b64decode(rt.encrypt_key, validate=True)
        return Keyring(primary=key)
    except (ValueError, GossipError) as exc:
        raise AgentError(
            f"Failed to decode the encrypt key: {exc}; use a base64 16, 24 or 32 byte key "
            "(wanfed keygen / consul keygen)"
        ) from exc


def _tune(cfg: MemberlistConfig, g: GossipConfig) -> None:
    cfg.gossip_interval = g.gossip_interval
    cfg.gossip_nodes = g.gossip_nodes
    cfg.probe_interval = g.probe_interval
    cfg.probe_timeout = g.probe_timeout
    cfg.suspicion_mult = g.suspicion_mult
    cfg.retransmit_mult = g.retransmit_mult


class AgentGossip(MultiService):
    """LAN (and, on servers, WAN) serf pools of one agent."""

    def __init__(
        self,
        rt: RuntimeConfig,
        reactor: ReactorLike,
        rng: random.Random | None = None,
        leave_timeout: float = DEFAULT_LEAVE_TIMEOUT,
        serf_tuning: Callable[[SerfConfig], None] | None = None,
        on_join_exhausted: Callable[[], object] | None = None,
        *,
        router: GossipRouter | None = None,
        on_lan_server: Callable[[str], object] | None = None,
        on_wan_server_joined: Callable[[str], object] | None = None,
        on_lan_event: Callable[[Event], object] | None = None,
        wrap_wan_transport: Callable[[NetTransport], IGossipTransport] | None = None,
        discover: Discover | None = None,
    ) -> None:
        """``router`` is the one the agent's RPC forwarder reads (a new one when None);
        ``wrap_wan_transport`` wraps the WAN pool's transport when it starts (wanfed);
        ``discover`` resolves ``provider=`` entries of ``retry_join(_wan)`` for each attempt
        (the reactor's mDNS and resolver when None)."""
        super().__init__()
        self.rt = rt
        self.discover = discover if discover is not None else Discover.for_reactor(reactor)
        self.on_join_exhausted = on_join_exhausted
        self.reactor = reactor
        self.leave_timeout = leave_timeout
        self.router = router if router is not None else GossipRouter(rt.datacenter)
        self.wanfed = rt.connect_mesh_gateway_wan_federation_enabled
        self._calls: list[IDelayedCall] = []
        self.flood_interval = FLOOD_INTERVAL
        self._flood_loop: task.LoopingCall | None = None
        self._left = False
        self.leave_on_stop = True  # False: stop without leaving (peers see the node fail)
        #: Called with ``host:port`` of the RPC port of each server of this datacenter that
        #: joins (or updates) in the LAN pool: raft's peer discovery (``server_discovered``).
        self.on_lan_server = on_lan_server
        #: Called with every LAN serf event (a client's server list, the leader's
        #: reconciliation of members into the catalog).
        self.on_lan_event = on_lan_event
        #: Called with the datacenter of a server of another datacenter joining the WAN pool.
        self.on_wan_server_joined = on_wan_server_joined
        keyring = _keyring(rt)

        lan_ml = lan_config(rt.node_name)
        _tune(lan_ml, rt.gossip_lan)
        lan_ml.bind_addr, lan_ml.bind_port = rt.serf_bind_addr_lan
        lan_ml.advertise_addr, lan_ml.advertise_port = rt.serf_advertise_addr_lan
        self._secure(lan_ml, keyring)
        lan_cfg = SerfConfig(
            rt.node_name, lan_ml, tags=lan_tags(rt), merge_check=lan_merge_check(rt.datacenter)
        )
        if serf_tuning is not None:
            serf_tuning(lan_cfg)
        self.lan = SerfService(lan_cfg, reactor, self._on_lan_event, rng=rng)
        self.lan.setName("serf-lan")
        self.lan.setServiceParent(self)

        self.wan: SerfService | None = None
        if rt.server_mode and rt.serf_bind_addr_wan is not None:
            wan_ml = wan_memberlist_config(rt.node_name, rt.datacenter, self.wanfed)
            _tune(wan_ml, rt.gossip_wan)
            wan_ml.bind_addr, wan_ml.bind_port = rt.serf_bind_addr_wan
            if rt.serf_advertise_addr_wan is not None:
                wan_ml.advertise_addr, wan_ml.advertise_port = rt.serf_advertise_addr_wan
            self._secure(wan_ml, keyring)
            tags = server_tags(
                datacenter=rt.datacenter,
                node_id=rt.node_id,
                build=f"{rt.version}:{rt.revision}",
                port=rt.server_port,
                consul_protocol=rt.rpc_protocol,
                raft_vsn=rt.raft_protocol,
                bootstrap_expect=rt.bootstrap_expect,
                bootstrap=rt.bootstrap,
                use_tls=bool(rt.ca_file or rt.ca_path),
                acls=acls_tag(rt),
            )
            wan_cfg = SerfConfig(
                wan_member_name(rt.node_name, rt.datacenter),
                wan_ml,
                tags=tags,
                merge_check=wan_merge_check(rt.datacenter, True),
            )
            if serf_tuning is not None:
                serf_tuning(wan_cfg)
            self.wan = SerfService(
                wan_cfg, reactor, self._on_wan_event, wrap_transport=wrap_wan_transport, rng=rng
            )
            self.wan.setName("serf-wan")
            self.wan.setServiceParent(self)

    def _secure(self, cfg: MemberlistConfig, keyring: Keyring | None) -> None:
        cfg.keyring = keyring
        cfg.gossip_verify_incoming = self.rt.encrypt_verify_incoming
        cfg.gossip_verify_outgoing = self.rt.encrypt_verify_outgoing

    # -- pools

    def lan_serf(self) -> Serf | None:
        return self.lan.serf

    def wan_serf(self) -> Serf | None:
        return self.wan.serf if self.wan is not None else None

    # -- events

    def _on_lan_event(self, ev: Event) -> None:
        self.router.lan.handle_event(ev)
        if self.on_lan_event is not None:
            self.on_lan_event(ev)
        if isinstance(ev, MemberEvent) and ev.type in ("member-join", "member-update"):
            for m in ev.members:
                self._flood(m.name)
                self._discover_server(m)

    def _discover_server(self, m: Member) -> None:
        """Tell raft about a LAN member that is a server of this datacenter (tags ``role`` =
        consul, ``dc`` and ``port``, as Consul's servers advertise them)."""
        tags = m.tags
        if self.on_lan_server is None or tags.get("role") != "consul":
            return
        if tags.get("dc") != self.rt.datacenter or not tags.get("port", "").isdigit():
            return
        host = f"[{m.addr}]" if ":" in m.addr else m.addr
        self.on_lan_server(f"{host}:{tags['port']}")

    def _on_wan_event(self, ev: Event) -> None:
        self.router.wan.handle_event(ev)
        hook = self.on_wan_server_joined
        if hook is None or not isinstance(ev, MemberEvent) or ev.type != "member-join":
            return
        for m in ev.members:
            dc = m.tags.get("dc", "")
            if m.tags.get("role") == "consul" and dc and dc != self.rt.datacenter:
                hook(dc)

    def _flood_all(self) -> None:
        lan = self.lan_serf()
        if lan is not None:
            for name in list(lan.members):
                self._flood(name)

    def _flood(self, lan_name: str) -> None:
        """Consul's flooder: join an alive LAN server into the WAN pool if it is not there."""
        lan, wan = self.lan_serf(), self.wan_serf()
        if lan is None or wan is None or self._left:
            return
        m = lan.members.get(lan_name)
        if m is None or m.name == self.rt.node_name:
            return
        addr = flood_join_address(m, self.rt.datacenter)
        if addr is None:
            return
        known = wan.members.get(wan_member_name(m.name, self.rt.datacenter))
        if known is not None and known.status == MemberStatus.ALIVE:
            return
        d = defer.Deferred.fromCoroutine(wan.join([addr]))
        d.addCallbacks(
            lambda _: log.info("serf: flood-joined server into WAN pool: addr={addr}", addr=addr),
            lambda f: log.warn(
                "serf: failed to flood-join server: addr={addr} error={error}",
                addr=addr,
                error=str(f.value),
            ),
        )

    # -- joins

    async def join(
        self, addrs: Sequence[str], wan: bool = False, *, via_gateways: bool = False
    ) -> int:
        """``JoinLAN`` / ``JoinWAN``: how many nodes were contacted; raises on failure.

        With WAN federation only the agent itself joins the WAN pool (``via_gateways``: the
        secondary's join of the primary); requests from users are refused.
        """
        if wan:
            if self.wanfed and not via_gateways:
                raise AgentError(WAN_JOIN_DISABLED)
            if self.wan is None or self.wan.serf is None:
                raise AgentError("Must be a server to join WAN cluster")
            pool = self.wan
        else:
            pool = self.lan
        cluster = "WAN" if wan else "LAN"
        log.info("({cluster}) joining: lan_addresses={addrs}", cluster=cluster, addrs=list(addrs))
        try:
            n = await pool.join(addrs)
        except GossipError as exc:
            log.warn("({cluster}) couldn't join: number_of_nodes=0 error={error}",
                     cluster=cluster, error=str(exc))
            raise
        log.info("({cluster}) joined: number_of_nodes={n}", cluster=cluster, n=n)
        return n

    def _retry_join(self, cluster: str, addrs: Sequence[str], interval: float, max_tries: int,
                    wan: bool) -> None:
        if not addrs:
            return
        attempt = 0
        log.info(
            "Retry join is supported for the following discovery methods: cluster={cluster} "
            "discovery_methods={methods}",
            cluster=cluster, methods=" ".join(discovery_methods()),
        )
        log.info("Joining cluster...", cluster=cluster)

        async def once() -> None:
            nonlocal attempt
            attempt += 1
            try:
                # retryJoinAddrs: provider= entries resolved (mdns) or skipped, per attempt
                found = await self.discover.addrs(addrs, "serf", cluster)
                if not found:
                    raise AgentError("No servers to join")
                n = await self.join(found, wan=wan)
            except (GossipError, AgentError) as exc:
                # Consul's ``attempt > maxAttempts``: retry_max = N makes N + 1 attempts.
                if max_tries > 0 and attempt > max_tries:
                    log.error(
                        "agent: max join {cluster} retry exhausted, exiting",
                        cluster=cluster.lower(), error=str(exc),
                    )
                    if self.on_join_exhausted is not None:
                        self.on_join_exhausted()
                    return
                log.warn(
                    "Join cluster failed, will retry: cluster={cluster} "
                    "retry_interval={interval}s error={error}",
                    cluster=cluster, interval=interval, error=str(exc),
                )
                if self.running:
                    self._calls.append(self.reactor.callLater(interval, go))
                return
            log.info(
                "Join cluster completed. Synced with initial agents: cluster={cluster} "
                "num_agents={n}",
                cluster=cluster, n=n,
            )

        def go() -> None:
            if self.running and not self._left:
                defer.Deferred.fromCoroutine(once())

        self._calls.append(self.reactor.callLater(0, go))

    def _start_join(self, addrs: Sequence[str], wan: bool) -> None:
        """``start_join(_wan)``: one attempt at start; failure stops the agent (Consul's
        ``startupJoin`` makes ``consul agent`` exit)."""
        if not addrs:
            return

        async def once() -> None:
            try:
                await self.join(addrs, wan=wan)
            except (GossipError, AgentError) as exc:
                log.error(
                    "Startup join failed, shutting down: cluster={cluster} error={error}",
                    cluster="WAN" if wan else "LAN", error=str(exc),
                )
                if self.on_join_exhausted is not None:
                    self.on_join_exhausted()

        self._calls.append(self.reactor.callLater(0, lambda: defer.Deferred.fromCoroutine(once())))

    def startService(self) -> None:
        super().startService()
        rt = self.rt
        if self.wan is not None:
            self._flood_loop = task.LoopingCall(self._flood_all)
            self._flood_loop.clock = self.reactor
            self._flood_loop.start(self.flood_interval, now=False)
        self._start_join(rt.start_join_addrs_lan, False)
        self._retry_join(
            "LAN", rt.retry_join_lan, rt.retry_join_interval_lan, rt.retry_join_max_attempts_lan,
            False,
        )
        if self.wan is not None and not self.wanfed:
            self._start_join(rt.start_join_addrs_wan, True)
            self._retry_join(
                "WAN", rt.retry_join_wan, rt.retry_join_interval_wan,
                rt.retry_join_max_attempts_wan, True,
            )

    # -- leave and stop

    async def leave(self) -> None:
        """Leave WAN then LAN gracefully (each bounded by ``leave_timeout``)."""
        self._left = True
        for name, svc in (("WAN", self.wan), ("LAN", self.lan)):
            if svc is None or svc.serf is None:
                continue
            log.info("Requesting serf leave: pool={pool}", pool=name)
            d = defer.Deferred.fromCoroutine(svc.leave())
            d.addTimeout(self.leave_timeout, self.reactor)
            try:
                await d
            except defer.TimeoutError:
                log.warn("Timed out leaving the {pool} pool", pool=name)
            except GossipError as exc:
                log.warn("Error leaving the {pool} pool: {error}", pool=name, error=exc)

    def force_leave(self, node: str, prune: bool = False) -> None:
        """serf ``RemoveFailedNode``: mark a failed member left (``prune``: forget it), in both
        pools (the WAN name is ``node`` or ``node.<dc>``)."""
        found = False
        for svc in (self.lan, self.wan):
            serf = svc.serf if svc is not None else None
            if serf is not None and serf.force_leave(node, prune):
                found = True
        if not found:
            raise AgentError(f"agent: No node found with name '{node}'")

    def stopService(self) -> defer.Deferred[None]:
        for c in self._calls:
            if c.active():
                c.cancel()
        self._calls.clear()
        if self._flood_loop is not None and self._flood_loop.running:
            self._flood_loop.stop()
        self._flood_loop = None

        async def stop() -> None:
            if not self._left and self.leave_on_stop:
                await self.leave()
            await super(AgentGossip, self).stopService()

        return defer.Deferred.fromCoroutine(stop())


__all__ = ["WAN_JOIN_DISABLED", "AgentGossip", "GossipRouter"]
