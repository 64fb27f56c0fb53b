"""The :8300 certificate matrix in memory (real OpenSSL, iosim-style pumping, ``task.Clock``).

The RPC port runs with a real ``TLSConfigurator`` (``verify_incoming``, ``verify_outgoing``,
``verify_server_hostname``; server ``s1`` of ``dc1``). Every peer certificate of
``wanfedtx.testing.pki.peer_matrix`` is tried on every path (plaintext type bytes, type 3 + inner
byte, native ALPN); a cell is "accepted" when the path's handler got the connection. Raft
(inner 1, ALPN ``consul/raft``) is served only to a server certificate of ``dc1`` with a node
name, and the node reaches the handler as ``peer_node``.

Also here: a forged AppendEntries over a legitimate TLS raft connection whose ``src`` is not
the certificate's node is refused and reaches nothing; 5,000 idle connections log a bounded
number of lines; the per-client connection limit at accept.
"""

from __future__ import annotations

from typing import Any

import pytest
from rpc_support import Link, Recorder, RecordingHandler
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.metrics import Registry
from wanfedtx.raft.messages import AppendEntries, Entry, Message
from wanfedtx.raft.transport import RaftHandler, frame
from wanfedtx.raft.wiring import ServerSourceCheck
from wanfedtx.rpc.constants import (
    ALPN_RPC_CONSUL,
    ALPN_RPC_MULTIPLEX_V2,
    ALPN_RPC_RAFT,
    ALPN_WAN_GOSSIP_PACKET,
    ALPN_WAN_GOSSIP_STREAM,
    RPCType,
)
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.rejections import MSG_CONN_LIMIT
from wanfedtx.rpc.server import RPCPortFactory
from wanfedtx.testing.pki import PKI, client_creator, peer_matrix
from wanfedtx.tls.configurator import TLSConfigurator

CERTS = ("none", "other-ca", "cli", "client", "server-other-dc", "server-no-node", "server")

# path -> (outer bytes before TLS or None for native, inner type byte or None, ALPN or None)
PATHS: dict[str, tuple[int | None, int | None, str | None]] = {
    "plain-0": (0, None, None),
    "plain-1": (1, None, None),
    "plain-4": (4, None, None),
    "tls3-0": (3, 0, None),
    "tls3-1": (3, 1, None),
    "tls3-4": (3, 4, None),
    "alpn-rpc-single": (None, None, ALPN_RPC_CONSUL),
    "alpn-rpc-multi": (None, None, ALPN_RPC_MULTIPLEX_V2),
    "alpn-raft": (None, None, ALPN_RPC_RAFT),
    "alpn-wan-gossip-packet": (None, None, ALPN_WAN_GOSSIP_PACKET),
    "alpn-wan-gossip-stream": (None, None, ALPN_WAN_GOSSIP_STREAM),
}

R, A = "refuse", "accept"
#                        none other-ca cli client other-dc no-node server
EXPECTED: dict[str, tuple[str, ...]] = {
    # verify_incoming closes every plaintext byte but 3 and 7, whatever the certificate
    "plain-0": (R, R, R, R, R, R, R),
    "plain-1": (R, R, R, R, R, R, R),
    "plain-4": (R, R, R, R, R, R, R),
    # legacy RPCTLS: a cert of our CA with a server or client name (any DC) may call RPC
    "tls3-0": (R, R, R, A, A, A, A),
    "tls3-4": (R, R, R, A, A, A, A),
    # raft: only a server cert of THIS DC with a node name
    "tls3-1": (R, R, R, R, R, R, A),
    # native TLS: servers only (they arrive through mesh gateways), any DC
    "alpn-rpc-single": (R, R, R, R, A, A, A),
    "alpn-rpc-multi": (R, R, R, R, A, A, A),
    "alpn-wan-gossip-packet": (R, R, R, R, A, A, A),
    "alpn-wan-gossip-stream": (R, R, R, R, A, A, A),
    "alpn-raft": (R, R, R, R, R, R, A),
}

CELLS = [(path, cert, EXPECTED[path][i]) for path in PATHS for i, cert in enumerate(CERTS)]


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


@pytest.fixture(scope="module")
def peers(pki: PKI) -> dict[str, Any]:
    return peer_matrix(pki, "dc1", "s2")


@pytest.fixture(scope="module")
def server_tls(pki: PKI) -> TLSConfigurator:
    return TLSConfigurator(pki.settings("dc1", "s1"))


def rpc_port(tls: TLSConfigurator | None, raft: Any = None, **kw: Any
             ) -> tuple[RPCPortFactory, dict[str, Any], Clock, Registry]:
    clock = Clock()
    reg = HandlerRegistry()
    handlers: dict[str, Any] = {}
    for t in (RPCType.CONSUL, RPCType.RAFT, RPCType.MULTIPLEX_V2):
        h = raft if (t == RPCType.RAFT and raft is not None) else RecordingHandler()
        reg.register(t, h)
        handlers[str(int(t))] = h
        if t.alpn_string():
            handlers[t.alpn_string()] = h
    for name in (ALPN_WAN_GOSSIP_PACKET, ALPN_WAN_GOSSIP_STREAM):
        h = RecordingHandler()
        reg.register_alpn(name, h)
        handlers[name] = h
    metrics = Registry()
    f = RPCPortFactory(reg, clock, tls, metrics=metrics, **kw)
    return f, handlers, clock, metrics


@implementer(IHandshakeListener)
class _App(Recorder):
    """The peer's application: after the handshake it writes ``payload``."""

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = payload

    def handshakeCompleted(self) -> None:
        if self.transport is not None:
            self.transport.write(self.payload)


class _Prefixed(Protocol):
    """Writes ``prefix`` in the clear, then runs ``inner`` (a TLS client) on the same socket."""

    def __init__(self, prefix: bytes, inner: Any) -> None:
        self.prefix, self.inner = prefix, inner

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        transport.write(self.prefix)
        self.inner.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.inner.connectionLost(reason)


def client_for(pki: PKI, pair: Any, path: str, clock: Clock, payload: bytes = b"hello") -> Any:
    outer, inner, alpn = PATHS[path]
    if outer is not None and outer != RPCType.TLS:
        return _Prefixed(bytes([outer]) + payload, Protocol())
    app_payload = (bytes([inner]) if inner is not None else b"") + payload
    creator = client_creator(pki.ca.cert_pem, pair, "server.dc1.consul", alpn)
    f = TLSMemoryBIOFactory(creator, True, Factory(), clock=clock)
    tls = f.protocol(f, _App(app_payload))
    return tls if outer is None else _Prefixed(bytes([outer]), tls)


def handler_of(path: str) -> str:
    outer, inner, alpn = PATHS[path]
    if alpn is not None:
        return alpn
    return str(inner if inner is not None else outer)


@pytest.mark.parametrize(("path", "cert", "expected"), CELLS,
                         ids=[f"{p}-{c}" for p, c, _ in CELLS])
def test_certificate_matrix(pki: PKI, peers: dict[str, Any], server_tls: TLSConfigurator,
                            logged: Any, path: str, cert: str, expected: str) -> None:
    f, handlers, clock, metrics = rpc_port(server_tls)
    link = Link(f.buildProtocol(None), client_for(pki, peers[cert], path, clock), clock)
    link.pump()
    clock.advance(0.1)
    link.pump()
    handler = handlers[handler_of(path)]
    if expected == A:
        assert len(handler.protocols) == 1, f"{path} with {cert}: the handler got nothing"
        assert handler.protocols[0].data == b"hello"
        assert not link.lost
        if path in ("tls3-1", "alpn-raft"):
            assert handler.infos[0].peer_node == "s2"
            assert metrics.counter("rpc.raft_handoff", "").value() == 1
    else:
        assert not any(h.protocols for h in handlers.values()), f"{path} with {cert} got in"
        assert link.lost or link.st.disconnecting
        lines = [e for e in logged if e.get("log_namespace") == "wanfedtx.rpc"
                 and "reason" in e and "peer" in e]
        assert len(lines) == 1, [e.get("log_format") for e in logged]
        assert lines[0]["peer"] == "127.0.0.1:50000"
        handshake_ok = ("server-other-dc", "server-no-node") + (
            ("client",) if path == "tls3-1" else ())  # native TLS takes server certs only
        if path in ("tls3-1", "alpn-raft") and cert in handshake_ok:
            # the TLS handshake passed; the server-identity check closed the connection
            assert lines[0]["reason"] == "raft-identity"
            assert "a TLS certificate with a CommonName of server.dc1.consul is required" \
                in lines[0]["error"]
            assert 'operation="raft RPC"' in lines[0]["log_format"]
            assert metrics.counter("rpc.raft_refused", "").value() == 1


def test_wildcard_node_certificate_is_any_server(pki: PKI, server_tls: TLSConfigurator) -> None:
    f, handlers, clock, _ = rpc_port(server_tls)
    link = Link(f.buildProtocol(None), client_for(pki, pki.server("dc1", "*"), "alpn-raft",
                                                  clock), clock)
    link.pump()
    assert handlers[ALPN_RPC_RAFT].infos[0].peer_node == "*"


def test_raft_needs_the_manual_ca_pool(pki: PKI) -> None:
    """A server cert from an auto-encrypt CA passes the handshake (combined pool) but not the
    server-identity check: only ``ca_file``/``ca_path`` CAs vouch for servers."""
    auto = PKI()
    tls = TLSConfigurator(pki.settings("dc1", "s1"))
    tls.update_auto_encrypt_ca([auto.ca.cert_pem])
    f, handlers, clock, metrics = rpc_port(tls)
    pair = auto.server("dc1", "s2")
    creator = client_creator(pki.ca.cert_pem, pair, "server.dc1.consul", ALPN_RPC_RAFT)
    tf = TLSMemoryBIOFactory(creator, True, Factory(), clock=clock)
    link = Link(f.buildProtocol(None), tf.protocol(tf, _App(b"hello")), clock)
    link.pump()
    assert not handlers[ALPN_RPC_RAFT].protocols
    assert metrics.counter("rpc.raft_refused", "").value() == 1
    f2, handlers2, clock2, _ = rpc_port(tls)
    link2 = Link(f2.buildProtocol(None), client_for(pki, pair, "tls3-4", clock2), clock2)
    link2.pump()
    assert handlers2["4"].protocols  # RPC still takes the combined pool


def test_identity_not_enforced_without_verify_server_hostname(pki: PKI) -> None:
    """VI on, VSH off: raft takes any CA-signed cert (as Consul); no peer_node."""
    tls = TLSConfigurator(pki.settings("dc1", "s1", verify_server_hostname=False))
    f, handlers, clock, _ = rpc_port(tls)
    link = Link(f.buildProtocol(None), client_for(pki, pki.client("dc1"), "tls3-1", clock), clock)
    link.pump()
    assert handlers["1"].infos[0].peer_node is None
    assert f.raft_security_warnings() and "verify_server_hostname" in f.raft_security_warnings()[0]


def test_plaintext_raft_warning_without_verify_incoming(pki: PKI) -> None:
    f, handlers, clock, _ = rpc_port(None)
    assert "UNAUTHENTICATED" in f.raft_security_warnings()[0]
    link = Link(f.buildProtocol(None), client_for(pki, None, "plain-1", clock), clock)
    link.pump()
    assert handlers["1"].protocols[0].data == b"hello"
    f2, _, _, _ = rpc_port(TLSConfigurator(pki.settings("dc1", "s1")))
    assert f2.raft_security_warnings() == []


# -- forged messages over a legitimate connection -------------------------------------------

def _append(src: str, term: int) -> AppendEntries:
    return AppendEntries(src=src, term=term, prev_index=0, prev_term=0,
                         entries=(Entry(index=1, term=term, data=b"forged"),), leader_commit=1)


@pytest.mark.parametrize(("src", "delivered"), [
    ("127.0.0.2:8300", True),  # s2's own raft address: served
    ("127.0.0.3:8300", False),  # s3's address over s2's certificate: forged
    ("192.0.2.9:8300", False),  # no server of this DC
])
def test_forged_append_entries_is_refused(pki: PKI, peers: dict[str, Any],
                                          server_tls: TLSConfigurator, logged: Any,
                                          src: str, delivered: bool) -> None:
    clock = Clock()
    metrics = Registry()
    check = ServerSourceCheck(lambda: [("s2", "127.0.0.2:8300"), ("s3", "127.0.0.3:8300")])
    raft = RaftHandler(source_check=check, clock=clock, metrics=metrics)
    got: list[Message] = []
    raft.receiver = got.append
    f, _, _, _ = rpc_port(server_tls, raft=raft)
    f.clock = clock
    payload = frame(_append(src, 1000)) + frame(_append("127.0.0.2:8300", 1001))
    link = Link(f.buildProtocol(None), client_for(pki, peers["server"], "alpn-raft", clock,
                                                  payload), clock)
    link.pump()
    if delivered:
        assert [m.term for m in got] == [1000, 1001]
        assert not link.lost
    else:
        assert got == []  # nothing reached raft, not even the honest message after it
        assert link.lost or link.st.disconnecting
        assert metrics.counter("raft.rpc.refused", "").value() == 1
        refused = [e for e in logged if e.get("log_namespace") == "wanfedtx.raft.transport"]
        assert len(refused) == 1 and src in refused[0]["error"]


def test_source_check_rules() -> None:
    check = ServerSourceCheck(lambda: [("S2", "::1:8300")], {"10.0.0.3:8300": "s3"})
    assert check("s2", "[::1]:8300") is None
    assert check("s3", "10.0.0.3:8300") is None
    assert check("*", "10.0.0.3:8300") is None
    assert check("*", "10.0.0.4:8300") is not None
    assert check("s3", "[::1]:8300") is not None
    assert check(None, "10.0.0.3:8300") is not None


# -- logs under attack and the per-client limit ---------------------------------------------

def _conn(f: RPCPortFactory, host: str, port: int) -> tuple[Any, StringTransport]:
    proto = f.buildProtocol(None)
    t = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8300),
                        peerAddress=IPv4Address("TCP", host, port))
    proto.makeConnection(t)
    return proto, t


def test_5000_idle_connections_log_a_bounded_number_of_lines(server_tls: TLSConfigurator,
                                                              logged: Any) -> None:
    f, _, clock, _ = rpc_port(server_tls, max_conns_per_client=0)
    conns = [_conn(f, "198.51.100.7", 10000 + i) for i in range(5000)]
    clock.advance(5.0)  # every first-byte deadline passes
    assert all(t.disconnecting or t.disconnected for _, t in conns)
    clock.advance(10.0)  # the summary line
    lines = [e for e in logged if e.get("log_namespace") == "wanfedtx.rpc"]
    assert 1 < len(lines) <= 11, len(lines)
    first = lines[0]
    assert first["reason"] == "first-byte-timeout" and "198.51.100.7" in first["peer"]
    assert lines[-1].get("count") == 4990


def test_conn_limit_per_client_at_accept(server_tls: TLSConfigurator, logged: Any) -> None:
    f, _, _, metrics = rpc_port(server_tls, max_conns_per_client=3)
    first = [_conn(f, "127.0.0.1", 20000 + i) for i in range(3)]
    assert not any(t.disconnecting for _, t in first)
    _, over = _conn(f, "127.0.0.1", 20010)
    assert over.disconnecting
    _, other = _conn(f, "127.0.0.2", 20011)
    assert not other.disconnecting
    lines = [e for e in logged if e.get("log_format", "").startswith(MSG_CONN_LIMIT)]
    assert len(lines) == 1 and "127.0.0.1" in lines[0]["peer"]
    accept = metrics.counter("rpc.accept_conn", "", ("status",))
    assert accept.value(status="rejected") == 1 and accept.value(status="accepted") == 4
    # a closed connection frees its slot
    proto, _t = first[0]
    proto.connectionLost(Failure(Exception("closed")))
    _, again = _conn(f, "127.0.0.1", 20012)
    assert not again.disconnecting
