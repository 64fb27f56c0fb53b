"""wire_agent: what a server agent gets with and without mesh-gateway WAN federation."""

from __future__ import annotations

from typing import Any

import pytest
from rpc_support import server_tls
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from wanfed_fakes import FakeInner

from wanfedtx.config import LoadOptions, load
from wanfedtx.gossip.interfaces import Address
from wanfedtx.rpc.interfaces import ConnectionInfo
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.testing.pki import PKI
from wanfedtx.wanfed.errors import ConfigurationError, OutgoingTLSDisabled
from wanfedtx.wanfed.framing import encode_frame
from wanfedtx.wanfed.ingest import PacketIngestProtocol
from wanfedtx.wanfed.resolver import StaticGatewayResolver
from wanfedtx.wanfed.transport import WanfedTransport
from wanfedtx.wanfed.wiring import wire_agent, wire_wan_pool


class WanPool:
    """Stands in for the WAN ``SerfService`` (its ``serf`` and ``net_transport``)."""

    def __init__(self) -> None:
        self.serf: Any = None
        self.net_transport: Any = None


def runtime(**flags: Any) -> Any:
    base: dict[str, Any] = {"node_name": "sec", "datacenter": "secondary",
                            "primary_datacenter": "primary", "server": True}
    base.update(flags)
    return load(LoadOptions(dev=True, flags=base)).runtime


def packet_conn(registry: HandlerRegistry) -> tuple[Any, StringTransport]:
    h = registry.for_alpn("consul/wan-gossip/packet")
    assert h is not None
    t = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4431))
    proto = h.build_protocol(ConnectionInfo(t, None, "consul/wan-gossip/packet", True))
    proto.makeConnection(t)
    return proto, t


def test_without_wanfed_only_ingestion_into_the_plain_transport() -> None:
    rt = runtime()
    pool, reg, r = WanPool(), HandlerRegistry(), MemoryReactorClock()
    assert wire_agent(rt, r, lambda: pool, reg, None) is None
    assert reg.for_alpn("consul/wan-gossip/stream") is not None
    _, t = packet_conn(reg)
    assert t.disconnecting  # the pool is not running
    pool.serf, pool.net_transport = object(), FakeInner()
    proto, t = packet_conn(reg)
    assert isinstance(proto, PacketIngestProtocol)
    proto.dataReceived(encode_frame(b"\x08hi"))
    assert pool.net_transport.ingested[0][:2] == (b"\x08hi", ("127.0.0.1", 4431))


def test_with_wanfed_the_pool_is_wrapped_and_routes_to_the_primary_gateways() -> None:
    rt = runtime(connect={"enabled": True, "enable_mesh_gateway_wan_federation": True},
                 primary_gateways=["127.0.0.1:4431", "provider=aws tag_key=x"])
    pool, reg, r = WanPool(), HandlerRegistry(), MemoryReactorClock()
    ca = PKI()
    wiring = wire_agent(rt, r, lambda: pool, reg, server_tls(ca, "secondary", "sec"))
    assert wiring is not None and wiring.current() is None
    inner = FakeInner()
    transport = wiring.wrap(inner)
    assert isinstance(transport, WanfedTransport) and wiring.transport is transport
    assert isinstance(transport.resolver, StaticGatewayResolver)
    assert transport.resolver.pick_gateway("primary") == "127.0.0.1:4431"
    assert transport.resolver.pick_gateway("dc3") is None
    transport.write_to_address(b"\x08x", Address("10.0.0.1:8302", "pri.primary"))
    assert [c[:2] for c in r.tcpClients] == [("127.0.0.1", 4431)]
    pool.serf = object()
    assert wiring.current() is transport


def test_with_wanfed_and_no_tls_files_sends_are_refused_with_the_reference_error() -> None:
    rt = runtime(connect={"enabled": True, "enable_mesh_gateway_wan_federation": True},
                 primary_gateways=["127.0.0.1:4431"])
    pool, r = WanPool(), MemoryReactorClock()
    wiring = wire_agent(rt, r, lambda: pool, HandlerRegistry(), None)
    assert wiring is not None
    transport = wiring.wrap(FakeInner())  # type: ignore[arg-type]
    with pytest.raises(OutgoingTLSDisabled):
        transport.write_to_address(b"\x08x", Address("10.0.0.1:8302", "pri.primary"))
    assert r.tcpClients == []


def test_wire_wan_pool_needs_tls_and_a_resolver() -> None:
    with pytest.raises(ConfigurationError, match=r"^wanfed: tlsConfigurator is nil$"):
        wire_wan_pool(WanPool, HandlerRegistry(), "dc1", None,
                      StaticGatewayResolver({}), MemoryReactorClock())
    with pytest.raises(ConfigurationError, match=r"^wanfed: gwResolver is nil$"):
        wire_wan_pool(WanPool, HandlerRegistry(), "dc1",
                      server_tls(PKI(), "dc1", "a"), None, MemoryReactorClock())
