"""Real sockets on 127.0.0.1 with real TLS: ALPN dial success, hostname errors, certless refusal,
and a certificate rotation picked up by the next connection of a running listener."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from OpenSSL import SSL
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.protocols.tls import TLSMemoryBIOFactory

from wanfedtx.testing.pki import PKI, RecordingFactory, RecordingProtocol
from wanfedtx.tls.configurator import OutgoingCreator, TLSConfigurator, TLSSettings
from wanfedtx.tls.errors import HostnameMismatch

pytestmark = pytest.mark.integration

PROTOS = ["consul/rpc-single", "consul/raft", "consul/rpc-multi", "consul/wan-gossip/stream"]
TIMEOUT = 10.0


async def wait_for(reactor: Any, cond: Callable[[], bool], what: str) -> None:
    deadline = reactor.seconds() + TIMEOUT
    while not cond():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


class Listener:
    def __init__(self, reactor: Any, creator: Any) -> None:
        self.factory = RecordingFactory(echo=True)
        self.port = reactor.listenTCP(
            0, TLSMemoryBIOFactory(creator, False, self.factory), interface="127.0.0.1"
        )
        self.address = self.port.getHost()


async def dial(
    reactor: Any, listener: Listener, creator: Any
) -> tuple[RecordingProtocol, RecordingProtocol]:
    """Connect, let the client send b"ping", wait until both sides are done, return both."""
    cf = RecordingFactory(greeting=b"ping", require_alpn=getattr(creator, "alpn", None) or None)
    before = len(listener.factory.protocols)
    reactor.connectTCP("127.0.0.1", listener.address.port, TLSMemoryBIOFactory(creator, True, cf))
    await wait_for(reactor, lambda: bool(cf.protocols), "client connection")
    await wait_for(reactor, lambda: len(listener.factory.protocols) > before, "server connection")
    client, server = cf.protocols[0], listener.factory.protocols[-1]
    await wait_for(
        reactor,
        lambda: client.record.data == b"ping" or client.record.lost is not None,
        "echo or failure",
    )
    if client.record.lost is None:
        assert client.transport is not None
        client.transport.loseConnection()
    await client.when_lost()
    await server.when_lost()
    return server, client


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


@pytest_twisted.ensureDeferred
async def test_alpn_dial_succeeds_and_checks_names(reactor: Any, pki: PKI) -> None:
    pri = TLSConfigurator(pki.settings("primary", "pri"))
    sec = TLSConfigurator(pki.settings("secondary", "sec"))
    listener = Listener(reactor, pri.incoming_alpn_creator(PROTOS))
    try:
        server, client = await dial(
            reactor, listener, sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
        )
        assert client.record.data == b"ping" and server.record.data == b"ping"
        assert client.record.negotiated == server.record.negotiated == b"consul/rpc-multi"

        # wrong DC: hostname error on the client, no data reaches the server
        server, client = await dial(
            reactor, listener, sec.outgoing_alpn_creator("secondary", "pri", "consul/rpc-multi")
        )
        assert client.record.lost is not None and client.record.lost.check(HostnameMismatch)
        assert "pri.server.secondary.consul" in str(client.record.lost.value)
        assert not server.record.handshake_done and server.record.data == b""
    finally:
        await listener.port.stopListening()

    # no common ALPN protocol: the handshake completes, the dialer refuses with our message
    raft_only = Listener(reactor, pri.incoming_alpn_creator(["consul/raft"]))
    try:
        server, client = await dial(
            reactor, raft_only, sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
        )
        assert client.record.alpn_error is not None
        assert str(client.record.alpn_error) == (
            'could not negotiate ALPN protocol "consul/rpc-multi" with ""'
        )
        # (the abort may drop the client's last flight, so the server may not finish its side)
        assert server.record.negotiated is None and server.record.data == b""
    finally:
        await raft_only.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_missing_node_san_fails_and_certless_client_is_refused(
    reactor: Any, pki: PKI
) -> None:
    no_node = TLSConfigurator(pki.settings("primary", "pri", pair=pki.server("primary")))
    sec = TLSConfigurator(pki.settings("secondary", "sec"))
    listener = Listener(reactor, no_node.incoming_alpn_creator(PROTOS))
    try:
        server, client = await dial(
            reactor, listener, sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
        )
        assert client.record.lost is not None and client.record.lost.check(HostnameMismatch)
        assert server.record.data == b""

        only_ca = TLSConfigurator(TLSSettings(ca_pem=pki.ca.cert_pem, verify_outgoing=True))
        name = "server.primary.consul"
        certless = OutgoingCreator(
            only_ca, sni=name, verify_chain=True, verify_name=name, alpn="consul/rpc-multi"
        )
        server, client = await dial(reactor, listener, certless)
        assert not server.record.handshake_done
        assert server.record.lost is not None and server.record.lost.check(SSL.Error)
        assert server.record.data == b"" and client.record.data == b""
    finally:
        await listener.port.stopListening()


def replace_file(path: str, data: bytes) -> None:
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.replace(path + ".new", path)


@pytest_twisted.ensureDeferred
async def test_rotation_is_used_by_next_connection(reactor: Any, pki: PKI, tmp_path: Path) -> None:
    settings = pki.settings("primary", "pri", tmp_path, pair=pki.server("primary"))
    listener = Listener(reactor, TLSConfigurator(settings).incoming_alpn_creator(PROTOS))
    sec = TLSConfigurator(pki.settings("secondary", "sec"))
    creator = sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
    try:
        _, client = await dial(reactor, listener, creator)
        assert client.record.lost is not None and client.record.lost.check(HostnameMismatch)
        fixed = pki.server("primary", "pri")
        assert settings.cert_file and settings.key_file
        replace_file(settings.cert_file, fixed.cert_pem)
        replace_file(settings.key_file, fixed.key_pem)
        _, client = await dial(reactor, listener, creator)
        assert client.record.data == b"ping"
    finally:
        d: Deferred[None] = listener.port.stopListening()
        await d
