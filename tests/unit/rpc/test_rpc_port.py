"""The RPC port in memory with real OpenSSL: type-byte dispatch, native TLS + ALPN, timeouts."""

from __future__ import annotations

from typing import Any

import pytest
from rpc_support import Link, OpenSSLTLS, Recorder, RecordingHandler, server_tls
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.protocols.tls import TLSMemoryBIOFactory

from wanfedtx.metrics import Registry
from wanfedtx.rpc.constants import ALPN_RPC_CONSUL, ALPN_RPC_RAFT, RPC_NEXT_PROTOS
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory
from wanfedtx.testing.pki import PKI


@pytest.fixture(scope="module")
def ca() -> PKI:
    return PKI()


def messages(events: list[dict[str, Any]]) -> list[str]:
    """The reference's message of each line (the text before the peer and the reason)."""
    return [e.get("log_format", "").split(": from=")[0] for e in events
            if e.get("log_namespace") == "wanfedtx.rpc"]


def port(tls: OpenSSLTLS | None, timeout: float = 5.0) -> tuple[RPCPortFactory, dict[str, Any],
                                                             Clock]:
    clock = Clock()
    reg = HandlerRegistry()
    handlers: dict[str, Any] = {}
    for t in (0, 1, 2, 4, 5, 6, 7):
        h = RecordingHandler()
        reg.register_type(t, h)
        handlers[str(t)] = h
    for name in RPC_NEXT_PROTOS:
        if name == "consul/rpc-gossip":
            continue
        h = RecordingHandler()
        reg.register_alpn(name, h)
        handlers[name] = h
    f = RPCPortFactory(reg, clock, tls, handshake_timeout=timeout, metrics=Registry())
    return f, handlers, clock


def tls_client(client_tls: OpenSSLTLS, clock: Clock, dc: str, node: str, alpn: str | None,
               app: Recorder) -> Any:
    if alpn is None:
        creator = client_tls.client_creator(f"server.{dc}.consul", None)
    else:
        creator = client_tls.client_creator(f"{node}.server.{dc}.consul", [alpn.encode()])
    f = TLSMemoryBIOFactory(creator, True, Factory(), clock=clock)
    return f.protocol(f, app)


@pytest.mark.parametrize("t", [0, 1, 2, 4, 5, 6])
def test_type_byte_reaches_handler_with_bytes_intact(t: int, ca: PKI) -> None:
    f, handlers, clock = port(server_tls(ca, "primary", "pri"))
    client = Recorder()
    link = Link(f.buildProtocol(None), client, clock)
    link.ct.write(bytes([t]) + b"hello")
    link.pump()
    link.ct.write(b" world")
    link.pump()
    (proto,) = handlers[str(t)].protocols
    assert proto.data == b"hello world"
    assert handlers[str(t)].infos[0].rpc_type == t and not handlers[str(t)].infos[0].tls


@pytest.mark.parametrize("chunk", [None, 1])
def test_native_tls_alpn_delivers_payload(ca: PKI, chunk: int | None, logged: Any) -> None:
    f, handlers, clock = port(server_tls(ca, "primary", "pri"))
    app = Recorder()
    client = tls_client(server_tls(ca, "secondary", "sec"), clock, "primary", "pri",
                        ALPN_RPC_CONSUL, app)
    link = Link(f.buildProtocol(None), client, clock, chunk=chunk)
    client.write(b"payload-1")
    link.pump(rounds=5000 if chunk else 100)
    (proto,) = handlers[ALPN_RPC_CONSUL].protocols
    assert proto.data == b"payload-1"
    info = handlers[ALPN_RPC_CONSUL].infos[0]
    assert info.alpn == ALPN_RPC_CONSUL and info.tls and info.rpc_type is None
    assert info.sni == "pri.server.primary.consul"
    assert client.negotiatedProtocol == ALPN_RPC_CONSUL.encode()
    proto.transport.write(b"reply")
    link.pump()
    assert app.data == b"reply"
    assert "detected actual TLS over RPC port" in messages(logged)
    assert "accepted nativeTLS RPC" in messages(logged)


def test_raft_alpn_counts_handoff(ca: PKI) -> None:
    f, handlers, clock = port(server_tls(ca, "primary", "pri"))
    client = tls_client(server_tls(ca, "primary", "pri2"), clock, "primary", "pri",
                        ALPN_RPC_RAFT, Recorder())
    link = Link(f.buildProtocol(None), client, clock)
    client.write(b"x")
    link.pump()
    assert handlers[ALPN_RPC_RAFT].protocols[0].data == b"x"
    assert f.raft_handoff.value() == 1


@pytest.mark.parametrize("alpn", ["consul/rpc-gossip", "foo/bar"])
def test_unknown_or_gossip_alpn_is_discarded(ca: PKI, alpn: str, logged: Any) -> None:
    f, handlers, clock = port(server_tls(ca, "primary", "pri"))
    app = Recorder()
    client = tls_client(server_tls(ca, "primary", "x"), clock, "primary", "pri", alpn, app)
    link = Link(f.buildProtocol(None), client, clock)
    client.write(b"x")
    link.pump()
    assert link.lost
    assert "discarding RPC for unknown negotiated protocol" in messages(logged)
    assert all(not h.protocols for h in handlers.values())


def test_native_tls_refused_when_not_mutual_tls_capable(ca: PKI, logged: Any) -> None:
    f, _handlers, clock = port(OpenSSLTLS(ca, None))
    client = tls_client(server_tls(ca, "primary", "x"), clock, "primary", "pri",
                        ALPN_RPC_CONSUL, Recorder())
    link = Link(f.buildProtocol(None), client, clock)
    link.pump()
    assert link.lost
    assert "unrecognized RPC byte" in messages(logged)


def test_client_without_cert_fails_handshake(ca: PKI, logged: Any) -> None:
    f, handlers, clock = port(server_tls(ca, "primary", "pri"))
    client = tls_client(OpenSSLTLS(ca, None), clock, "primary", "pri", ALPN_RPC_CONSUL,
                        Recorder())
    link = Link(f.buildProtocol(None), client, clock)
    client.write(b"x")
    link.pump()
    assert link.lost
    assert "TLS handshake failed" in messages(logged)
    assert not handlers[ALPN_RPC_CONSUL].protocols


def test_stalled_handshake_closed_at_timeout(ca: PKI, logged: Any) -> None:
    f, _handlers, clock = port(server_tls(ca, "primary", "pri"), timeout=5.0)
    client = tls_client(server_tls(ca, "primary", "x"), clock, "primary", "pri",
                        ALPN_RPC_CONSUL, Recorder())
    link = Link(f.buildProtocol(None), client, clock)
    hello = link.ct.value()
    link.ct.clear()
    link.server.dataReceived(hello[:20])  # part of the ClientHello, then nothing
    clock.advance(4.9)
    assert not link.st.disconnecting
    clock.advance(0.2)
    assert link.st.disconnecting
    assert "TLS handshake failed" in messages(logged)


def test_silent_connection_closed_at_timeout(ca: PKI, logged: Any) -> None:
    f, _handlers, clock = port(server_tls(ca, "primary", "pri"), timeout=5.0)
    link = Link(f.buildProtocol(None), Recorder(), clock)
    clock.advance(5.0)
    assert link.st.disconnecting
    assert "failed to read first byte" in messages(logged)


def test_handler_takes_over_before_timeout(ca: PKI) -> None:
    f, handlers, clock = port(server_tls(ca, "primary", "pri"), timeout=5.0)
    link = Link(f.buildProtocol(None), Recorder(), clock)
    link.ct.write(b"\x00a")
    link.pump()
    clock.advance(60)
    assert not link.st.disconnecting
    assert handlers["0"].protocols[0].data == b"a"


def test_verify_incoming_refuses_plaintext(ca: PKI, logged: Any) -> None:
    f, _handlers, clock = port(server_tls(ca, "primary", "pri", verify_incoming=True))
    link = Link(f.buildProtocol(None), Recorder(), clock)
    link.ct.write(b"\x04hello")
    link.pump()
    assert link.lost
    assert "Non-TLS connection attempted with VerifyIncoming set" in messages(logged)


def test_legacy_rpctls_then_inner_type_byte(ca: PKI) -> None:
    f, handlers, clock = port(server_tls(ca, "primary", "pri", verify_incoming=True))
    app = Recorder()
    client = tls_client(server_tls(ca, "primary", "x"), clock, "primary", "pri", None, app)
    outer = Recorder()
    link = Link(f.buildProtocol(None), outer, clock)
    # the client writes the outer byte 3 in plaintext, then speaks TLS on the same socket
    link.ct.write(b"\x03")
    client.makeConnection(link.ct)
    link.client = client
    client.write(b"\x04inner")
    link.pump()
    (proto,) = handlers["4"].protocols
    assert proto.data == b"inner"
    assert handlers["4"].infos[0].tls


def test_legacy_rpctls_insecure_has_no_inner_byte(ca: PKI) -> None:
    f, handlers, clock = port(server_tls(ca, "primary", "pri"))
    client = tls_client(OpenSSLTLS(ca, None), clock, "primary", "pri", None, Recorder())
    link = Link(f.buildProtocol(None), Recorder(), clock)
    link.ct.write(b"\x07")
    client.makeConnection(link.ct)
    link.client = client
    client.write(b"sign-me")
    link.pump()
    assert handlers["7"].protocols[0].data == b"sign-me"


def test_type_without_handler_is_unrecognized(ca: PKI, logged: Any) -> None:
    clock = Clock()
    f = RPCPortFactory(HandlerRegistry(), clock, None, metrics=Registry())
    link = Link(f.buildProtocol(None), Recorder(), clock)
    link.ct.write(b"\x02x")
    link.pump()
    assert link.lost
    assert [e for e in logged if e.get("log_format", "").startswith("unrecognized RPC byte: from=")
            and e.get("byte") == 2 and e["log_level"] is LogLevel.error]


def test_insecure_type_refused_when_provider_has_no_insecure_creator(ca: PKI, logged: Any
                                                                     ) -> None:
    class Strict(OpenSSLTLS):
        incoming_insecure_rpc_creator = None  # type: ignore[assignment]

    f, handlers, clock = port(Strict(ca, ca.server("primary", "pri")))
    link = Link(f.buildProtocol(None), Recorder(), clock)
    link.ct.write(b"\x07")
    link.pump()
    assert link.lost and not handlers["7"].protocols
    assert "unrecognized RPC byte" in messages(logged)


@pytest.mark.allow_logged_errors
def test_handler_that_raises_closes_the_connection(fail_on_logged_errors: Any) -> None:
    class Broken:
        def build_protocol(self, conn: Any) -> Any:
            raise RuntimeError("no capacity")

    clock = Clock()
    reg = HandlerRegistry()
    reg.register_type(0, Broken())
    f = RPCPortFactory(reg, clock, None, metrics=Registry())
    link = Link(f.buildProtocol(None), Recorder(), clock)
    link.ct.write(b"\x00x")
    link.pump()
    assert link.lost
    assert "no capacity" in fail_on_logged_errors[0]["log_failure"].getErrorMessage()


def test_tls_material_error_closes_with_log_and_when_closed_fires(ca: PKI, logged: Any) -> None:
    class Unloadable(OpenSSLTLS):
        def incoming_alpn_creator(self, protocols: Any) -> Any:
            raise OSError("cert file vanished")

    f, _, clock = port(Unloadable(ca, ca.server("primary", "pri")))
    server = f.buildProtocol(None)
    client = tls_client(server_tls(ca, "primary", "x"), clock, "primary", "pri",
                        ALPN_RPC_CONSUL, Recorder())
    link = Link(server, client, clock)
    link.pump()
    assert link.lost
    assert [e for e in logged if e.get("log_format", "").startswith("TLS handshake failed: from=")
            and "vanished" in e.get("error", "")]
    fired: list[None] = []
    server.when_closed().addCallback(fired.append)
    assert fired == [None]
