"""WanfedTransport routing and the ingestion handlers, with real OpenSSL in memory.

The transport dials through a ``MemoryReactorClock``; each dial is joined by hand (``Link``) to a
real RPC port factory (native TLS + ALPN dispatch) whose wanfed handlers feed a recording inner
transport, so SNI, ALPN, framing and pooling are checked end to end without sockets.
"""

from __future__ import annotations

from typing import Any

import pytest
from rpc_support import Link, OpenSSLTLS, server_tls
from twisted.internet.testing import MemoryReactorClock
from wanfed_fakes import FakeInner, Resolver, Sink, captured_logs, formats

from wanfedtx.gossip.errors import GossipError
from wanfedtx.gossip.interfaces import Address
from wanfedtx.gossip.pools import split_node_name
from wanfedtx.metrics import Registry
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory
from wanfedtx.testing.pki import PKI
from wanfedtx.wanfed.errors import ConfigurationError, DCNotAvailable, OutgoingTLSDisabled
from wanfedtx.wanfed.ingest import register_ingestion
from wanfedtx.wanfed.resolver import StaticGatewayResolver
from wanfedtx.wanfed.transport import WanfedTransport

GW = "127.0.0.1:4431"


@pytest.fixture(scope="module")
def ca() -> PKI:
    return PKI()


def make(ca: PKI, tls: OpenSSLTLS | None = None, gateways: dict[str, str] | None = None
         ) -> tuple[WanfedTransport, FakeInner, MemoryReactorClock, Resolver]:
    r = MemoryReactorClock()
    inner = FakeInner()
    res = Resolver({"primary": GW} if gateways is None else gateways)
    t = WanfedTransport(inner, "secondary", tls or server_tls(ca, "secondary", "sec"), res, r)
    return t, inner, r, res


def server_side(ca: PKI, clock: MemoryReactorClock, running: bool = True
                ) -> tuple[RPCPortFactory, FakeInner, list[Any]]:
    """The primary server's RPC port with the wanfed handlers; records ConnectionInfos."""
    remote = FakeInner()
    reg = HandlerRegistry()
    register_ingestion(reg, lambda: remote if running else None, clock)
    infos: list[Any] = []
    for name in ("consul/wan-gossip/packet", "consul/wan-gossip/stream"):
        h = reg.for_alpn(name)
        assert h is not None

        class Spy:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def build_protocol(self, conn: Any) -> Any:
                infos.append(conn)
                return self.inner.build_protocol(conn)

        reg._by_alpn[name] = Spy(h)
    f = RPCPortFactory(reg, clock, server_tls(ca, "primary", "pri"), metrics=Registry())
    return f, remote, infos


def connect(r: MemoryReactorClock, port: RPCPortFactory, i: int = -1) -> Link:
    factory = r.tcpClients[i][2]
    client = factory.buildProtocol(None)
    link = Link(port.buildProtocol(None), client, r)
    link.pump()
    return link


def test_split_node_name_cases() -> None:
    for bad in ("", "foo", "foo.bar.baz"):
        with pytest.raises(GossipError, match=f"^node name does not encode a datacenter: {bad}$"):
            split_node_name(bad)
    assert split_node_name("foo.bar") == ("foo", "bar")
    assert split_node_name(".bar") == ("", "bar")
    assert split_node_name("*.primary") == ("*", "primary")


def test_constructor_errors(ca: PKI) -> None:
    r = MemoryReactorClock()
    with pytest.raises(ConfigurationError, match=r"^wanfed: tlsConfigurator is nil$"):
        WanfedTransport(FakeInner(), "dc1", None, Resolver({}), r)
    with pytest.raises(ConfigurationError, match=r"^wanfed: gwResolver is nil$"):
        WanfedTransport(FakeInner(), "dc1", server_tls(ca, "dc1", "a"), None, r)


def test_same_dc_goes_to_the_wrapped_transport(ca: PKI) -> None:
    t, inner, r, res = make(ca)
    a = Address("127.0.0.5:8302", "other.secondary")
    assert t.write_to_address(b"\x08x", a) == 1.0
    sink = Sink()
    t.dial_address(a, sink, 3.0)
    assert inner.written == [(b"\x08x", a)] and inner.dialed == [a]
    assert r.tcpClients == [] and res.asked == []


def test_unnamed_or_unsplittable_addresses_fail(ca: PKI) -> None:
    t, inner, r, _ = make(ca)
    for name in ("", "nodc", "a.b.c"):
        with pytest.raises(GossipError, match="node name does not encode a datacenter"):
            t.write_to_address(b"x", Address("127.0.0.1:8302", name))
        with pytest.raises(GossipError, match="node name does not encode a datacenter"):
            t.dial_address(Address("127.0.0.1:8302", name), Sink(), 1.0)
    assert inner.written == [] and r.tcpClients == []


def test_no_gateway_is_dc_not_available(ca: PKI) -> None:
    t, _, r, res = make(ca, gateways={})
    with pytest.raises(DCNotAvailable, match=r"^Remote DC has no server currently reachable$"):
        t.write_to_address(b"x", Address("10.0.0.1:8302", "pri.primary"))
    with pytest.raises(DCNotAvailable):
        t.dial_address(Address("10.0.0.1:8302", "pri.primary"), Sink(), 1.0)
    assert res.asked == ["primary", "primary"] and r.tcpClients == []


def test_without_tls_material_gateway_dials_are_refused(ca: PKI) -> None:
    t, _, r, _ = make(ca, tls=OpenSSLTLS(ca, None))
    msg = "^wanfed: cannot dial via a mesh gateway when outgoing TLS is disabled$"
    with pytest.raises(OutgoingTLSDisabled, match=msg):
        t.write_to_address(b"x", Address("10.0.0.1:8302", "pri.primary"))
    with pytest.raises(OutgoingTLSDisabled, match=msg):
        t.dial_address(Address("10.0.0.1:8302", "pri.primary"), Sink(), 1.0)
    assert r.tcpClients == []


def test_packets_framed_over_one_pooled_tls_conn_to_the_gateway(ca: PKI) -> None:
    t, _, r, _ = make(ca)
    port, remote, infos = server_side(ca, r)
    target = Address("10.9.9.9:8302", "pri.primary")  # never dialed: the gateway is
    t.write_to_address(b"\x08first", target)
    t.write_to_address(b"\x08second", target)  # waits for the same dial
    assert len(r.tcpClients) == 1
    host, portnum = r.tcpClients[0][:2]
    assert (host, portnum) == ("127.0.0.1", 4431)
    assert r.tcpClients[0][3] == 10.0  # the fixed 10 s dial timeout
    link = connect(r, port)
    link.pump()
    assert [p for p, _, _ in remote.ingested] == [b"\x08first", b"\x08second"]
    assert remote.ingested[0][1] == ("127.0.0.1", 50000)  # the TCP peer (the gateway)
    (info,) = infos
    assert info.alpn == "consul/wan-gossip/packet" and info.sni == "pri.server.primary.consul"
    # Reused: no new dial for later packets to the same node.
    t.write_to_address(b"\x08third", target)
    link.pump()
    assert len(r.tcpClients) == 1 and remote.ingested[-1][0] == b"\x08third"
    assert t.pool.idle_count("pri.primary") == 1
    # Another node of the same DC gets its own connection (pool key = full node name).
    t.write_to_address(b"\x08x", Address("10.9.9.8:8302", "pri2.primary"))
    assert len(r.tcpClients) == 2
    # After 2 min idle the reaper closes the connection; the next packet dials again.
    r.advance(121)
    link.pump()
    assert link.lost
    t.write_to_address(b"\x08again", target)
    assert len(r.tcpClients) == 3


def test_wildcard_node_uses_the_datacenter_sni(ca: PKI) -> None:
    t, _, r, _ = make(ca)
    port, remote, infos = server_side(ca, r)
    sink = Sink(hello=b"push-pull")
    t.dial_address(Address("192.0.2.2:8302", "*.primary"), sink, 0.001)
    assert r.tcpClients[0][:2] == ("127.0.0.1", 4431)  # never 192.0.2.2
    link = connect(r, port)
    (info,) = infos
    assert info.alpn == "consul/wan-gossip/stream" and info.sni == "server.primary.consul"
    (proto,) = remote.stream_protocols
    assert proto.data == b"push-pull"
    proto.transport.write(b"reply")
    link.pump()
    assert sink.data == b"reply"
    sink.writer.close()  # type: ignore[union-attr]
    link.pump()
    link.disconnect()
    assert sink.lost == [None]


def test_stream_per_dial_never_pooled(ca: PKI) -> None:
    t, _, r, _ = make(ca)
    a = Address("10.0.0.1:8302", "pri.primary")
    t.dial_address(a, Sink(), 1.0)
    t.dial_address(a, Sink(), 1.0)
    assert len(r.tcpClients) == 2


def test_failed_dials_are_reported(ca: PKI) -> None:
    from twisted.internet.error import ConnectionRefusedError
    from twisted.python.failure import Failure

    t, _, r, _ = make(ca)
    sink = Sink()
    t.dial_address(Address("10.0.0.1:8302", "pri.primary"), sink, 1.0)
    r.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert len(sink.lost) == 1 and sink.lost[0] is not None
    assert sink.lost[0].startswith(f"dial via mesh gateway {GW} failed: dial tcp {GW}")
    with captured_logs() as logs:
        t.write_to_address(b"x", Address("10.0.0.1:8302", "pri.primary"))
        r.tcpClients[1][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert "memberlist: Failed to send packet to {addr}: {error}" in formats(logs)
    # The key is not wedged: the next packet dials again.
    t.write_to_address(b"x", Address("10.0.0.1:8302", "pri.primary"))
    assert len(r.tcpClients) == 3


def test_wrong_server_name_fails_the_handshake(ca: PKI) -> None:
    """The gateway delivered us to a server whose cert lacks the SAN we asked for."""
    t, _, r, _ = make(ca)
    port, remote, infos = server_side(ca, r)
    sink = Sink()
    t.dial_address(Address("10.0.0.1:8302", "bob.primary"), sink, 1.0)
    with captured_logs():
        link = connect(r, port)
        link.pump()
    assert remote.stream_protocols == [] and infos == []
    assert len(sink.lost) == 1 and sink.lost[0] is not None


def test_ingestion_closes_when_the_pool_is_not_running(ca: PKI) -> None:
    t, _, r, _ = make(ca)
    port, remote, _ = server_side(ca, r, running=False)
    t.write_to_address(b"\x08x", Address("10.0.0.1:8302", "pri.primary"))
    link = connect(r, port)
    link.pump()
    assert remote.ingested == [] and link.lost
    sink = Sink()
    t.dial_address(Address("10.0.0.1:8302", "pri.primary"), sink, 1.0)
    link2 = connect(r, port)
    link2.pump()
    assert link2.lost and sink.lost == [None] and remote.stream_protocols == []


def test_shutdown_closes_pool_then_inner(ca: PKI) -> None:
    t, inner, r, _ = make(ca)
    port, _, _ = server_side(ca, r)
    t.write_to_address(b"\x08x", Address("10.0.0.1:8302", "pri.primary"))
    link = connect(r, port)
    d = t.shutdown()
    link.pump()
    assert link.lost and d.called and inner.shut_down
    assert t.pool.closed
    with pytest.raises(GossipError, match=r"^wanfed: connection pool is closed$"):
        t.write_to_address(b"\x08x", Address("10.0.0.1:8302", "pri.primary"))


def test_static_resolver() -> None:
    import random

    res = StaticGatewayResolver({"primary": ["10.0.0.2:443", "10.0.0.1:443"], "dc3": []},
                                "secondary", random.Random(1))
    assert res.pick_gateway("dc3") is None and res.pick_gateway("nope") is None
    picks = {res.pick_gateway("primary") for _ in range(50)}
    assert picks == {"10.0.0.1:443", "10.0.0.2:443"}
    with captured_logs() as logs:
        p = StaticGatewayResolver.from_primary_gateways(
            "primary", ["1.2.3.4:443", "provider=aws tag_key=x"], "secondary")
    assert p.pick_gateway("primary") == "1.2.3.4:443" and p.pick_gateway("secondary") is None
    assert any("provider=" in str(e.get("log_format")) for e in logs)
