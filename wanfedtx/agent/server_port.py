# -*- test-case-name: tests.integration.agent.test_agent_rpc_port -*-
"""A server agent's RPC port (``ports.server``, default 8300) and its raft, from RuntimeConfig.

Serves ``consul/rpc-single`` (type 0) and ``consul/rpc-multi`` (type 4) with the endpoint table
of this server: ``Status.Ping`` plus every catalog/health/KV/status endpoint of the
``CatalogAgent``. TLS comes from ``ca_file``/``cert_file``/``key_file``: with a CA and a cert the
port also accepts native TLS with ALPN (``wanfedtx.rpc.server``), and ``verify_incoming`` applies
to the legacy path. Other parts (raft, WAN gossip tunnels) register their handlers on
``registry`` before the service starts.

The port enforces ``limits.rpc_max_conns_per_client`` at accept and listens with the kernel's
``somaxconn`` backlog. With ``verify_incoming`` and ``verify_server_hostname`` raft is served only
to this datacenter's servers, each message checked against the sender's certificate node name
(``ServerSourceCheck`` over the LAN gossip servers).
"""

from __future__ import annotations

import os

from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.framebudget import FrameBudget
from wanfedtx.fsm.machine import FSM
from wanfedtx.listening import tcp_endpoint
from wanfedtx.raft.core import RaftOptions
from wanfedtx.raft.service import RaftService
from wanfedtx.raft.wiring import ServerLister, ServerSourceCheck, raft_on_rpc_port
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.reactors import ReactorLike
from wanfedtx.rpc.constants import DEFAULT_PARTIAL_BUDGET, RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.endpoints import Endpoints, default_endpoints
from wanfedtx.rpc.interfaces import ServerAddress
from wanfedtx.rpc.protocol import RPCHandler
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService
from wanfedtx.rpc.server import log as rpc_log
from wanfedtx.tls.configurator import TLSConfigurator


def tls_configurator(config: RuntimeConfig) -> TLSConfigurator | None:
    """The agent's TLS configurator, or None when no TLS file is configured."""
    if not (config.ca_file or config.cert_file or config.key_file):
        return None
    return TLSConfigurator(config.tls_settings())


class ServerPort:
    """The registry, endpoint table and listening service of one server's RPC port."""

    def __init__(
        self,
        config: RuntimeConfig,
        reactor: ReactorLike,
        tls: TLSConfigurator | None,
        endpoints: Endpoints | None = None,
    ) -> None:
        self.endpoints = endpoints if endpoints is not None else default_endpoints()
        self.registry = HandlerRegistry()
        # one budget for the unfinished request frames of every RPC connection of this port
        self.rpc_frame_budget = FrameBudget(DEFAULT_PARTIAL_BUDGET)
        # one rate-limited log for every line a peer can cause on this port; the port's
        # service flushes it on stop
        rate_log = RateLimitedLog(rpc_log, reactor)
        for rpc_type, multi in ((RPCType.CONSUL, False), (RPCType.MULTIPLEX_V2, True)):
            self.registry.register(rpc_type, RPCHandler(
                self.endpoints, multi=multi, budget=self.rpc_frame_budget, rate_log=rate_log))
        self.factory = RPCPortFactory(
            self.registry, reactor, tls, handshake_timeout=config.rpc_handshake_timeout,
            max_conns_per_client=config.rpc_max_conns_per_client, rate_log=rate_log,
        )
        host, port = config.rpc_bind_addr
        self.service = RPCPortService(tcp_endpoint(reactor, host, port), self.factory)


def raft_peers(config: RuntimeConfig) -> list[str]:
    """Raft peers (``host:port`` of their RPC ports) from ``retry_join``/``start_join``.

    Join addresses name the peers' LAN gossip port; every server is taken to use this server's
    ``ports.server`` for RPC, as Consul's servers advertise it in their gossip tags.
    """
    peers: list[str] = []
    for entry in (*config.start_join_addrs_lan, *config.retry_join_lan):
        if "provider=" in entry:
            continue  # a go-discover entry: its servers come from LAN gossip once joined
        host = entry.rsplit("/", 1)[-1]  # memberlist's "name/addr" form
        if host.startswith("["):
            host = host[1 : host.index("]")]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        peers.append(f"{host}:{config.server_port}")
    return peers


def build_raft(
    config: RuntimeConfig,
    reactor: ReactorLike,
    fsm: FSM,
    server_port: ServerPort,
    dialer: Dialer,
    lan_servers: ServerLister | None = None,
) -> RaftService:
    """This server's raft on its RPC port, its log under ``<data_dir>/raft``.

    ``bootstrap`` (and ``-dev``) bootstraps a single-server cluster; otherwise
    ``bootstrap_expect`` servers from the join addresses bootstrap together. ``lan_servers``
    lists this datacenter's servers known to LAN gossip (node, raft address): with server
    identity enforced, inbound raft messages are accepted only from those.
    """
    host, port = config.rpc_advertise_addr
    advertise = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    expect = 1 if (config.bootstrap or config.dev_mode) else config.bootstrap_expect
    source_check = None
    if server_port.factory.server_identity_required():
        source_check = ServerSourceCheck(lan_servers, {advertise: config.node_name})
    return raft_on_rpc_port(
        advertise=advertise,
        data_dir=os.path.join(config.data_dir, "raft"),
        fsm=fsm,
        registry=server_port.registry,
        dialer=dialer,
        reactor=reactor,
        peers=raft_peers(config),
        bootstrap_expect=expect,
        source_check=source_check,
        options=RaftOptions.for_multiplier(config.raft_multiplier,
                                           max_entry_bytes=config.raft_max_entry_size,
                                           max_append_bytes=config.raft_max_entry_size),
        partial_frame_budget=config.raft_partial_frame_budget,
        frame_timeout=config.raft_frame_timeout,
    )


class RaftLeader:
    """``ILeaderProvider`` from raft. Raft names servers by RPC address, and until gossip tells
    node names that address is also the name the connection pool keys the leader by (the legacy
    TLS path the pool uses within a datacenter verifies ``server.<dc>.<domain>``, not a node)."""

    def __init__(self, raft: RaftService) -> None:
        self.raft = raft

    def is_leader(self) -> bool:
        return self.raft.is_leader()

    def leader(self) -> ServerAddress | None:
        addr = self.raft.leader_address()
        return ServerAddress(name=addr, addr=addr) if addr else None

