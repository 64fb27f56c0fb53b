# -*- test-case-name: tests.unit.wanfed.test_wanfed_wiring -*-
"""Plugging the wanfed transport into a server (the reference's ``setupSerf``, WAN only).

``wire_wan_pool`` builds the ``WanfedWiring`` whose ``wrap`` the WAN ``SerfService`` takes as its
``wrap_transport`` constructor argument (it wraps the UDP/TCP transport with a
``WanfedTransport`` when the pool starts), and registers the two ingestion ALPN handlers on the
RPC port's registry; they reach the WAN transport only while the pool runs. The pool is given as
a provider (``Callable[[], IWanPool | None]``), read on each use, because the pool is built
after its wrapper. (The WAN memberlist's
``require_node_names`` and per-node TCP-ping switch come from
``gossip.pools.wan_memberlist_config``.)

``wire_agent`` does it for a server agent from its ``RuntimeConfig``. With
``connect.enable_mesh_gateway_wan_federation`` the resolver is the caller's (the gateway locator)
or else ``StaticGatewayResolver.from_primary_gateways`` (docs/decisions.md); a server without TLS
material still gets the transport, whose gateway dials then fail with the reference's
``wanfed: cannot dial via a mesh gateway when outgoing TLS is disabled``. Without the option the
WAN pool keeps its plain transport, and the ingestion handlers still feed it, as the reference's
server always ingests tunnelled gossip into ``memberlistTransportWAN``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.gossip.interfaces import IGossipTransport
from wanfedtx.gossip.transport import NetTransport
from wanfedtx.reactors import ReactorLike
from wanfedtx.rpc.interfaces import IClientTLS, IGatewayResolver
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.tls.configurator import TLSConfigurator, TLSSettings

from .constants import DIAL_TIMEOUT, GOSSIP_PACKET_MAX_IDLE_TIME
from .errors import ConfigurationError
from .ingest import register_ingestion
from .resolver import StaticGatewayResolver
from .transport import WanfedTransport


class IWanPool(Protocol):
    """What the wiring reads of the WAN pool (a ``SerfService``): running when ``serf`` is set."""

    @property
    def serf(self) -> object | None: ...

    @property
    def net_transport(self) -> NetTransport | None: ...


WanPoolProvider = Callable[[], IWanPool | None]


class WanfedWiring:
    """The WAN pool's wanfed transport, created when the pool starts."""

    def __init__(
        self,
        wan: WanPoolProvider,
        datacenter: str,
        tls: IClientTLS,
        resolver: IGatewayResolver,
        reactor: ReactorLike,
        dial_timeout: float = DIAL_TIMEOUT,
        max_idle: float = GOSSIP_PACKET_MAX_IDLE_TIME,
    ) -> None:
        self.wan = wan
        self.datacenter = datacenter
        self.tls = tls
        self.resolver = resolver
        self.reactor = reactor
        self.dial_timeout = dial_timeout
        self.max_idle = max_idle
        self.transport: WanfedTransport | None = None

    def wrap(self, inner: NetTransport) -> IGossipTransport:
        self.transport = WanfedTransport(
            inner, self.datacenter, self.tls, self.resolver, self.reactor,
            dial_timeout=self.dial_timeout, max_idle=self.max_idle,
        )
        return self.transport

    def current(self) -> IGossipTransport | None:
        """The running WAN pool's transport; None before start and once stopping."""
        pool = self.wan()
        return self.transport if pool is not None and pool.serf is not None else None


def wire_wan_pool(
    wan: WanPoolProvider,
    registry: HandlerRegistry,
    datacenter: str,
    tls: IClientTLS | None,
    resolver: IGatewayResolver | None,
    reactor: ReactorLike,
    **kw: float,
) -> WanfedWiring:
    """The wiring whose ``wrap`` the WAN pool takes; the ingestion handlers on ``registry``."""
    if tls is None:
        raise ConfigurationError("wanfed: tlsConfigurator is nil")
    if resolver is None:
        raise ConfigurationError("wanfed: gwResolver is nil")
    wiring = WanfedWiring(wan, datacenter, tls, resolver, reactor, **kw)
    register_ingestion(registry, wiring.current, reactor)
    return wiring


def wire_agent(
    rt: RuntimeConfig,
    reactor: ReactorLike,
    wan: WanPoolProvider,
    registry: HandlerRegistry,
    tls: IClientTLS | None,
    resolver: IGatewayResolver | None = None,
) -> WanfedWiring | None:
    """A server's WAN pool and RPC port (module docstring); None without mesh-gateway
    federation (then only the ingestion handlers are registered, into the plain transport)."""
    if not rt.connect_mesh_gateway_wan_federation_enabled:

        def plain() -> IGossipTransport | None:
            pool = wan()
            return pool.net_transport if pool is not None and pool.serf is not None else None

        register_ingestion(registry, plain, reactor)
        return None
    if tls is None:  # like the reference's configurator without certificates: dials refuse
        tls = TLSConfigurator(TLSSettings(domain=rt.domain, node_name=rt.node_name,
                                          datacenter=rt.datacenter))
    if resolver is None:
        resolver = StaticGatewayResolver.from_primary_gateways(
            rt.primary_datacenter, rt.primary_gateways, rt.datacenter)
    return wire_wan_pool(wan, registry, rt.datacenter, tls, resolver, reactor)
