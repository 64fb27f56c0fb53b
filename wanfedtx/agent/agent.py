# -*- test-case-name: tests.unit.agent.test_agent_wiring,tests.integration.agent -*-
"""``Agent``: one ``MultiService`` built from a ``RuntimeConfig``.

The agent owns the HTTP API on ``client_addr:ports.http``, its serf pools (``agent.gossip``: LAN
for every agent, WAN for servers; ``/v1/agent/members``, join, leave, force-leave) and, on
servers, the catalog and the RPC port on ``ports.server``. The RPC forwarder's router of other
datacenters is fed by the pools (``agent.gossip.router``). On servers the leader reconciles
the LAN members into the catalog (``reconcile.MemberReconciler``). Clients (``server = false``)
get a ``client_services.ClientAgent`` instead of the catalog: the same HTTP API, every request
forwarded to a server found through LAN gossip. Later parts (gateways) become child services
here.
The node ID is resolved when the agent is built (``nodeid.resolve_node_id``) and stored in
``agent.config``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.acl.remote import RemoteResolver, authorize
from wanfedtx.acl.resolver import LocalResolver
from wanfedtx.acl.tokens import agent_tokens
from wanfedtx.aclserver.server import ACLServer
from wanfedtx.agent import limits
from wanfedtx.agent.catalog_services import CatalogAgent, catalog_agent_from_config
from wanfedtx.agent.client_services import ClientAgent
from wanfedtx.agent.discover import Discover
from wanfedtx.agent.errors import AgentError
from wanfedtx.agent.gossip import DEFAULT_LEAVE_TIMEOUT, AgentGossip, GossipRouter
from wanfedtx.agent.httpserver import HTTPServerService
from wanfedtx.agent.member import local_member
from wanfedtx.agent.nodeid import resolve_node_id
from wanfedtx.agent.primary_join import PrimaryJoin
from wanfedtx.agent.reconcile import MemberReconciler
from wanfedtx.agent.server_port import (
    RaftLeader,
    ServerPort,
    build_raft,
    tls_configurator,
)
from wanfedtx.agent.snapshots import build_snapshots, client_snapshot_routes, snapshot_routes
from wanfedtx.agent.stats import extra_stats
from wanfedtx.catalog.leader import LeaderServices
from wanfedtx.client.router import NEW_LEADER_EVENT
from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.connect.server import ConnectCAServer
from wanfedtx.federation.gateway_locator import GatewayLocator
from wanfedtx.federation.server import FederationServer
from wanfedtx.fsm.machine import FSM
from wanfedtx.gossip.api import member_json
from wanfedtx.gossip.errors import GossipError
from wanfedtx.gossip.serf import Event, SerfConfig
from wanfedtx.http.acl_agent_token import AgentTokenRoutes, wire_agent_tokens
from wanfedtx.http.aclgate import AgentACLGate
from wanfedtx.http.agent import AgentRoutes
from wanfedtx.http.agent_ops import AgentOpsRoutes
from wanfedtx.http.app import API
from wanfedtx.http.family import RouteFamily
from wanfedtx.http.gossip import GossipOpsRoutes, MembersRoutes
from wanfedtx.http.limits import http_limits
from wanfedtx.http.routes import server_families
from wanfedtx.http.ui import UIRoutes
from wanfedtx.local.state import LocalState
from wanfedtx.metrics import REGISTRY
from wanfedtx.processmetrics import register_process_metrics
from wanfedtx.raft.operator import OperatorEndpoints, ServerIdentity
from wanfedtx.raft.service import RaftService
from wanfedtx.reactors import ReactorLike, installed_reactor
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.forward import Forwarder, StaticLeader
from wanfedtx.rpc.interfaces import IGatewayResolver, ILeaderProvider, ServerAddress
from wanfedtx.rpc.pool import ConnPool
from wanfedtx.services import MultiService
from wanfedtx.snapshot.server import SnapshotServer
from wanfedtx.state import StateStore
from wanfedtx.tls.server_identity import WILDCARD_NODE
from wanfedtx.wanfed.wiring import WanfedWiring, wire_agent

log = Logger(namespace="agent")

class Agent(MultiService):
    """The wanfed agent process: every long-running part is a child service.

    This is the composition root: the only place that knows every package. Every part gets its
    collaborators as constructor arguments; parts are built first and added as children
    afterwards, in start order (gossip, RPC port, raft, connection pool, catalog, federation,
    gateway locator, primary join, HTTP).
    """

    def __init__(
        self,
        config: RuntimeConfig,
        reactor: ReactorLike | None = None,
        *,
        leave_timeout: float = DEFAULT_LEAVE_TIMEOUT,
        serf_tuning: Callable[[SerfConfig], None] | None = None,
        gateway_resolver: IGatewayResolver | None = None,
        request_shutdown: Callable[[], object] | None = None,
    ) -> None:
        """``serf_tuning`` adjusts each pool's ``SerfConfig`` before it starts (tests use it for
        short timings); it is not reachable from configuration. ``gateway_resolver`` picks mesh
        gateways for WAN gossip with ``connect.enable_mesh_gateway_wan_federation`` (default: the
        ``primary_gateways`` of the primary datacenter, ``wanfedtx.wanfed.wiring``).
        ``request_shutdown`` is called after ``PUT /v1/agent/leave`` and when joins are
        exhausted (default: stop this service; the CLI passes ``reactor.stop``)."""
        super().__init__()
        if reactor is None:
            reactor = installed_reactor()
        self.reactor = reactor
        self.config = attrs.evolve(config, node_id=resolve_node_id(config))
        # acl.tokens.*, replaced by PUT /v1/agent/token/<kind> (and acl-tokens.json at start)
        self.tokens, self.config = agent_tokens(self.config)
        self.request_shutdown: Callable[[], object] = (
            request_shutdown if request_shutdown is not None else self.stop
        )
        #: Callers of a stop that came while one was under way (``PUT /v1/agent/leave`` and the
        #: owner both stopping): they wait for it instead of stopping every child a second time.
        self._stop_waiters: list[Deferred[None]] | None = None
        rt = self.config
        register_process_metrics(REGISTRY)
        router = GossipRouter(rt.datacenter)
        # Servers: the RPC port (ports.server), raft over it, then the state store, the
        # catalog/health/KV endpoints, local services and anti-entropy on top of raft.
        # set by the runner (``wanfedtx.agent.lifecycle.SignalLoop``): re-read the configuration
        # and apply what reloads, as SIGHUP; returns the errors (``PUT /v1/agent/reload``)
        self.reload_config: Callable[[], list[str]] | None = None
        self.tls = tls_configurator(self.config)
        mismatch = self.check_own_certificate()
        if mismatch is not None:
            if rt.verify_server_hostname:
                raise AgentError(mismatch)
            log.warn("{mismatch}", mismatch=mismatch)
        self.server_port: ServerPort | None = None
        self.raft: RaftService | None = None
        self.pool: ConnPool | None = None
        self.catalog: CatalogAgent | None = None
        self.federation: FederationServer | None = None
        self.connect_ca: ConnectCAServer | None = None
        self.acl: ACLServer | None = None
        self.locator: GatewayLocator | None = None
        self.primary_join: PrimaryJoin | None = None
        self.forwarder: Forwarder | None = None
        self.snapshots: SnapshotServer | None = None
        self.wanfed: WanfedWiring | None = None
        # Clients: the servers learnt from LAN gossip and an RPC client to them, behind the
        # same interface the HTTP API uses on servers (``client_services.ClientAgent``).
        self.client: ClientAgent | None = None
        self.reconcile: LeaderServices | None = None
        if rt.server_mode:
            self._build_server(reactor, router, gateway_resolver)
        else:
            self.client = ClientAgent(self.config, reactor, self.tls,
                                      lan_members=self._lan_member_count)
        raft = self.raft
        federation = self.federation
        connect_ca = self.connect_ca
        wake = (
            (lambda dc: (federation.wake_routines(),
                         connect_ca.wake_routines() if connect_ca is not None else None))
            if federation is not None and self.locator is not None
            else None
        )
        self.gossip = AgentGossip(
            self.config,
            reactor,
            leave_timeout=leave_timeout,
            serf_tuning=serf_tuning,
            on_join_exhausted=lambda: self.request_shutdown(),
            router=router,
            on_lan_server=raft.server_discovered if raft is not None else None,
            on_wan_server_joined=wake,
            wrap_wan_transport=self.wanfed.wrap if self.wanfed is not None else None,
            on_lan_event=self._lan_event,
        )
        self._mount_routes()
        self.http: HTTPServerService | None = None
        if self.config.http_addrs:
            self.http = HTTPServerService(reactor, self._gated(self.app.resource()),
                                          self.config.http_addrs, http_limits(self.config))
        self._add_children()

    def _build_server(
        self,
        reactor: ReactorLike,
        router: GossipRouter,
        gateway_resolver: IGatewayResolver | None,
    ) -> None:
        rt = self.config
        fsm = FSM()
        wan_federation = rt.connect_mesh_gateway_wan_federation_enabled
        if wan_federation:
            # Servers with WAN federation: the gateway locator resolves other datacenters for
            # the RPC dialer.
            self.locator = GatewayLocator(
                reactor,
                random.Random(),
                rt.datacenter,
                rt.primary_datacenter,
                fsm.state.federation_state_list,
                self._has_leader,
            )
        resolver = gateway_resolver if gateway_resolver is not None else self.locator
        dialer = Dialer(reactor, rt.datacenter, server=True, tls=self.tls,
                        gateway_resolver=resolver if wan_federation else None)
        # Without raft (no data_dir) this server leads its in-memory consensus.
        me = ServerAddress(rt.node_name, f"{rt.advertise_addr_lan}:{rt.server_port}")
        leader: ILeaderProvider = StaticLeader(me, rt.node_name)
        if rt.server_port > 0:
            self.server_port = ServerPort(rt, reactor, self.tls)
            if rt.data_dir:
                self.raft = build_raft(
                    rt, reactor, fsm, self.server_port, dialer,
                    lambda: [(s.short_name, s.rpc_addr)
                             for s in router.lan.servers(rt.datacenter)],
                )
                leader = RaftLeader(self.raft)
        # Writes go to the leader; other datacenters are reached through the gossip router.
        clock: IReactorTime = reactor  # the reactor is also the IReactorTime the pool reaps with
        self.pool = ConnPool(dialer, clock)
        forwarder = Forwarder(self.pool, rt.datacenter, leader, router)
        self.forwarder = forwarder
        self.catalog = catalog_agent_from_config(self.config, reactor, self.raft, fsm, forwarder)
        if self.server_port is not None:
            self.catalog.endpoints.register_into(self.server_port.endpoints)
        # The leader registers every LAN member (clients included) with serfHealth.
        self.reconcile = LeaderServices(self.catalog.consensus, self._reconcile_routines,
                                        name="reconcile")
        # Federation states: raft type 30, FederationState.* RPCs, /v1/internal APIs and, on
        # every server as the reference (with or without WAN federation via mesh gateways), the
        # leader routines: anti-entropy everywhere, pruning in the primary, replication in a
        # secondary.
        self.federation = FederationServer(
            self.catalog,
            rt.primary_datacenter,
            leader_routines=True,
            replication_token=rt.acl_tokens.replication,
        )
        if self.server_port is not None:
            self.federation.register_into(self.server_port.endpoints)
        # The Connect CA: raft type 13, ConnectCA.* RPCs, the primary leader's initialization.
        self.connect_ca = ConnectCAServer(self.catalog, rt.primary_datacenter,
                                          rt.connect_ca_config, reactor,
                                          enabled=rt.connect_enabled,
                                          replication_token=rt.acl_tokens.replication)
        if self.server_port is not None:
            self.connect_ca.register_into(self.server_port.endpoints)
        # ACLs: raft types 11/17-20 (always, so a log written with ACLs on replays), ACL.*
        # RPCs, the resolver the endpoints authorize with, the primary leader's initialization.
        self.acl = ACLServer(
            self.catalog,
            rt.primary_datacenter,
            enabled=rt.acls_enabled,
            default_policy=rt.acl_default_policy,
            initial_management=rt.acl_tokens.initial_management,
            data_dir=rt.data_dir,
            replication_token=rt.acl_tokens.replication,
            down_policy=rt.acl_down_policy,
            token_ttl=rt.acl_token_ttl,
            policy_ttl=rt.acl_policy_ttl,
            key_list_policy=rt.acl_enable_key_list_policy,
        )
        if self.server_port is not None:
            self.acl.register_into(self.server_port.endpoints)
        # Operator.Raft*: the raft configuration, named by LAN gossip's servers.
        operator = OperatorEndpoints(
            self.raft,
            lambda: {s.rpc_addr: ServerIdentity(s.short_name, s.tags.get("id", ""),
                                                s.tags.get("raft_vsn", "unknown"))
                     for s in router.lan.servers(rt.datacenter)},
            self.catalog.endpoints._forward,
            me.addr,
        )
        self.catalog.handlers.update(operator.handlers())
        if self.server_port is not None:
            operator.register_into(self.server_port.endpoints)
        # Every RPC handler (HTTP's in-process table and the :8300 table) checks ACLs.
        self.acl.guard(self.server_port.endpoints if self.server_port is not None else None)
        # Snapshots: save/restore through raft, consul/rpc-snapshot on the RPC port.
        self.snapshots = build_snapshots(
            rt, clock, fsm, self.catalog.consensus, dialer, leader, router,
            self.acl.guard_resolver,
            self.server_port.registry if self.server_port is not None else None)
        if self.locator is not None and rt.datacenter != rt.primary_datacenter:
            # A secondary finds the primary's gateways and joins its WAN pool; the primary
            # never joins anyone: secondaries join it.
            discover = Discover.for_reactor(reactor)
            self.primary_join = PrimaryJoin(
                reactor,
                primary_datacenter=rt.primary_datacenter,
                primary_gateways=rt.primary_gateways,
                gateways_interval=rt.primary_gateways_interval,
                retry_interval=rt.retry_join_interval_wan,
                retry_max=rt.retry_join_max_attempts_wan,
                refresh_fallback=self.locator.refresh_primary_gateway_fallback_addresses,
                primary_gateways_ready=self.locator.primary_gateways_ready,
                join_wan=lambda addrs: self.gossip.join(addrs, wan=True, via_gateways=True),
                on_exhausted=lambda: self.request_shutdown(),
                discover=lambda entries: discover.addrs(
                    entries, "mesh-gateway", "primary", resolve_names=True),
            )
        # WAN gossip tunnelled through mesh gateways (wanfed): ingestion on the RPC port, and
        # with connect.enable_mesh_gateway_wan_federation the WAN pool's gateway transport,
        # resolved by the gateway locator (or the resolver a test passes). The WAN pool is
        # built after its wrapper, so the wiring reads it through a provider.
        if rt.serf_bind_addr_wan is not None and self.server_port is not None:
            self.wanfed = wire_agent(rt, reactor, lambda: self.gossip.wan,
                                     self.server_port.registry, self.tls, resolver)

    def _reconcile_routines(self) -> list[MemberReconciler]:
        catalog = self.catalog
        if catalog is None:
            return []
        clock: Any = self.reactor  # the reactor is also the IReactorTime the routine uses
        return [MemberReconciler(catalog.endpoints, self._lan_members, self.config.node_name,
                                 clock, announce=self._announce_leader, raft=self.raft)]

    def _announce_leader(self) -> None:
        """Consul's ``consul:new-leader`` LAN user event (payload: this node's name)."""
        serf = self.gossip.lan_serf()
        if serf is None:
            return
        try:
            serf.user_event(NEW_LEADER_EVENT, self.config.node_name.encode())
        except GossipError as exc:
            log.warn("failed to announce leadership: {error}", error=str(exc))

    def _lan_members(self) -> list[Any]:
        serf = self.gossip.lan_serf()
        return list(serf.members.values()) if serf is not None else []

    def _lan_member_count(self) -> int:
        return len(self._lan_members())

    def _lan_event(self, ev: Event) -> None:
        """Every LAN serf event: the client's server list, the leader's reconciliation."""
        if self.client is not None:
            self.client.servers.handle_event(ev)
        term = self.reconcile.routines if self.reconcile is not None else []
        for routine in term:
            if isinstance(routine, MemberReconciler):
                routine.handle_event(ev)

    def _has_leader(self) -> bool:
        """The gateway locator's "is there a leader" question (none before the catalog)."""
        if self.catalog is None:
            return False
        consensus = self.catalog.consensus
        return consensus.is_leader() or bool(consensus.leader_address())

    def _gated(self, resource: Any) -> Any:
        """The API behind the ACL gate of the agent endpoints (with ACLs on): servers resolve
        tokens from their store, client agents ask their servers (cached for token_ttl)."""
        acl, rt, clock = self.acl, self.config, self.reactor
        part: Any = self.catalog if self.catalog is not None else self.client
        if not rt.acls_enabled or part is None:
            return resource
        local = part.local
        authorizer: Callable[[str], Any]
        if acl is not None:
            guard_resolver = acl.guard_resolver
            authorizer = lambda secret: authorize(guard_resolver, secret, clock.seconds())  # noqa: E731
        else:
            rpc, dc = part.rpc, rt.datacenter

            def remote(method: str, args: dict[str, Any]) -> Deferred[Any]:
                return rpc(method, dict(args, Datacenter=dc))  # type: ignore[no-any-return]

            resolver = RemoteResolver(
                LocalResolver(StateStore(), dc, rt.acl_default_policy),
                remote,
                rt.acl_down_policy,
                rt.acl_token_ttl,
                rt.acl_policy_ttl,
            )
            authorizer = lambda secret: resolver.authorize(secret, clock.seconds())  # noqa: E731

        def service_of(sid: str) -> str | None:
            entry = local.services.get(sid)
            return None if entry is None else str(entry.service.get("Service") or "")

        def check_service_of(cid: str) -> str | None:
            entry = local.checks.get(cid)
            return None if entry is None else str(entry.check.get("ServiceName") or "")

        return AgentACLGate(
            resource,
            authorizer,
            rt.node_name,
            lambda: self.tokens.default,
            service_of,
            check_service_of,
        )

    def _mount_routes(self) -> None:
        families: list[RouteFamily] = [
            AgentRoutes(self),
            MembersRoutes(self.gossip.lan_serf, self.gossip.wan_serf),
            GossipOpsRoutes(self),
            AgentOpsRoutes(self),
            UIRoutes(),
        ]
        if self.catalog is not None:
            families += server_families(self.catalog, self.config.acl_tokens.default)
            if self.snapshots is not None:
                families.append(snapshot_routes(self.config, self.snapshots))
        elif self.client is not None:
            families += server_families(self.client, self.config.acl_tokens.default)
            families.append(client_snapshot_routes(self.config, self.reactor,
                                                   self.client.servers, self.client.dialer))
        families.append(AgentTokenRoutes(self.tokens, self.config.acls_enabled))
        self.app = API(families)
        wire_agent_tokens(self, self.tokens, families)

    def _add_children(self) -> None:
        """Every part as a named child service, in start order."""
        children: list[tuple[str | None, Any]] = [("gossip", self.gossip)]
        if self.server_port is not None:
            children.append(("rpc", self.server_port.service))
        children += [("raft", self.raft), (None, self.pool), ("catalog", self.catalog),
                     ("reconcile", self.reconcile), ("client", self.client),
                     ("federation", self.federation), ("connect_ca", self.connect_ca),
                     ("acl", self.acl),
                     ("gateway_locator", self.locator),
                     ("primary_join", self.primary_join), ("http", self.http)]
        for name, child in children:
            if child is None:
                continue
            if name is not None:
                child.setName(name)
            child.setServiceParent(self)

    # AgentView
    def member(self) -> dict[str, Any]:
        """This node's LAN serf member (before the pool runs: what it will advertise)."""
        serf = self.gossip.lan_serf()
        if serf is not None and serf.name in serf.members:
            return member_json(serf.local_member())
        return local_member(self.config)

    # IAgentGossipOps (join/leave/force-leave endpoints)
    async def join(self, addrs: Sequence[str], wan: bool = False) -> int:
        return await self.gossip.join(addrs, wan=wan)

    async def leave_and_shutdown(self) -> None:
        """``PUT /v1/agent/leave``: leave every pool gracefully, then shut the agent down."""
        await self.gossip.leave()
        self.reactor.callLater(0, self.request_shutdown)

    def force_leave(self, node: str, prune: bool = False) -> None:
        self.gossip.force_leave(node, prune)

    def reload(self) -> Deferred[None]:
        """``PUT /v1/agent/reload``: the same as SIGHUP (the runner's ``reload_config`` reads
        every config source again); fails with ``Failed to reload configs: ...``."""
        if self.reload_config is None:
            return fail(AgentError("Failed to reload configs: this agent was not started from "
                                   "config files (in-process); restart it to apply changes"))
        errors = self.reload_config()
        if errors:
            return fail(AgentError("Failed to reload configs: " + "; ".join(errors)))
        return succeed(None)

    def local_state(self) -> LocalState | None:
        """The agent's local services and checks (None when it keeps none)."""
        if self.catalog is not None:
            return self.catalog.local
        if self.client is not None:
            return self.client.local
        return None

    def apply_reload(self, new: RuntimeConfig) -> list[str]:
        """Apply what Consul reloads from ``new`` (``wanfedtx.agent.lifecycle``); returns the
        errors, one line each."""
        from wanfedtx.agent.lifecycle import reload_agent

        return reload_agent(self, new)

    def check_own_certificate(self) -> str | None:
        """A server's own certificate must name ``server.<dc>.<domain>`` and this node
        (``<node>.server.<dc>.<domain>``, or the wildcard): the mismatch in one line, or None.
        Refused at start-up with ``verify_server_hostname`` (peers would refuse this server),
        a warning otherwise."""
        rt = self.config
        if not rt.server_mode or self.tls is None:
            return None
        identity = self.tls.own_server_identity()
        if identity is None:
            return None
        if identity.reason is not None:
            problem = identity.reason
        elif identity.node not in (rt.node_name.lower(), WILDCARD_NODE):
            problem = (f"it names the node {identity.node!r}: the node SAN must be "
                       f"{rt.node_name.lower()}.server.{rt.datacenter}.{rt.domain}")
        else:
            return None
        return (f"cert_file {rt.cert_file}: the certificate does not match this server (node "
                f"{rt.node_name!r}, datacenter {rt.datacenter!r}): {problem}")

    def stats(self) -> dict[str, dict[str, str]]:
        rt = self.config
        return {
            "agent": {
                "check_monitors": "0",
                "check_ttls": "0",
                "checks": str(len(rt.checks)),
                "services": str(len(rt.services)),
            },
            "build": {"prerelease": "", "revision": rt.revision, "version": rt.version},
            **extra_stats(self),
        }

    def http_urls(self) -> list[str]:
        """Base URLs of the HTTP API as bound (``http://127.0.0.1:8500``)."""
        if self.http is None:
            return []
        out = []
        for host, port in self.http.bound_addresses():
            shown = "127.0.0.1" if host == "0.0.0.0" else ("::1" if host == "::" else host)
            out.append(f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}")
        return out

    def stop(self) -> Deferred[None]:
        """Stop every child service; the Deferred fires when every socket is closed."""
        d: Deferred[None] = maybeDeferred(self.stopService)
        return d.addCallback(lambda _: None)

    def stopService(self) -> Deferred[None]:
        """Graceful leave: a leading server hands raft leadership to another voter first. A stop
        asked for while one is under way waits for that one."""
        if not self.running and self._stop_waiters is None:
            return succeed(None)  # stopped already (or never started)
        if self._stop_waiters is not None:
            waiter: Deferred[None] = Deferred()
            self._stop_waiters.append(waiter)
            return waiter
        self._stop_waiters = []

        def stop_children(_: None) -> Deferred[None]:
            stopped: Deferred[None] = MultiService.stopService(self)
            return stopped

        def release(result: object) -> object:
            waiters, self._stop_waiters = self._stop_waiters or [], None
            for waiter in waiters:  # each caller learns how the one stop ended
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(None)
            return result

        d = self._hand_over_leadership().addCallback(stop_children)
        return d.addBoth(release)

    def _hand_over_leadership(self) -> Deferred[None]:
        raft = self.raft
        if raft is None or not raft.running or not raft.is_leader() or len(raft.peers()) < 2:
            return succeed(None)
        log.info("agent: transferring raft leadership before leaving")

        def done(new_leader: str) -> None:
            log.info("agent: raft leadership transferred: leader={leader}", leader=new_leader)

        def failed(f: Failure) -> None:
            log.warn("agent: leadership transfer failed, leaving anyway: {error}",
                     error=f.getErrorMessage())

        return raft.transfer_leadership().addCallbacks(done, failed)

    def startService(self) -> None:
        log.info(
            "Starting agent: node={node} dc={dc}",
            node=self.config.node_name,
            dc=self.config.datacenter,
        )
        before, after = limits.raise_open_files_limit()
        if after != before:
            log.debug("raised the open files limit: from={old} to={new}", old=before, new=after)
        limits.fix_malloc_mmap_threshold()
        super().startService()
