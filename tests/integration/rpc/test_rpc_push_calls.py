"""The calls of one reactor turn on an ``rpc-multi`` connection leave in batches of
``PUSH_EVERY``: over real TCP and real TLS on 127.0.0.1, a peer that is not Twisted (a blocking
socket read while the reactor is held) has every ``PUSH_EVERY``-th call's batch before the turn
ends, and the rest once the reactor runs again."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import ssl as tssl
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThread

from wanfedtx.rpc.codec import FrameDecoder, Request
from wanfedtx.rpc.errors import ConnectionClosed
from wanfedtx.rpc.protocol import PUSH_EVERY, RPCClientProtocol
from wanfedtx.testing.pki import PKI

pytestmark = pytest.mark.integration

CALLS = 2 * PUSH_EVERY + 4


def _read_calls(recv: Callable[[int], bytes], decoder: FrameDecoder, count: int,
                timeout: float = 10.0) -> list[int]:
    """Blocking reads until ``count`` more complete request frames arrived (their seqs)."""
    seqs: list[int] = []
    deadline = time.monotonic() + timeout
    while len(seqs) < count:
        assert time.monotonic() < deadline, f"only {len(seqs)} of {count} calls arrived"
        try:
            data = recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        assert data, "the connection closed"
        for msg in decoder.feed(data):
            assert isinstance(msg, Request) and msg.method == "Status.Ping"
            seqs.append(msg.seq)
    return seqs


def _listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    return listener


async def _check_batches(reactor: Any, proto: RPCClientProtocol,
                         recv: Callable[[int], bytes]) -> None:
    decoder = FrameDecoder()
    calls = [proto.call("Status.Ping", None) for _ in range(CALLS)]
    for d in calls:  # never answered: they fail when the test closes the connection
        d.addErrback(lambda f: f.trap(ConnectionClosed))
    # the reactor has not run since the first call: what arrives now was pushed by call()
    pushed = 2 * PUSH_EVERY
    assert _read_calls(recv, decoder, pushed) == list(range(pushed))
    assert decoder.buffered == 0  # nothing of the remaining calls: they wait for the turn's end
    rest = await deferToThread(_read_calls, recv, decoder, CALLS - pushed)
    assert rest == list(range(pushed, CALLS))


@pytest_twisted.ensureDeferred
async def test_plain_tcp_calls_leave_in_batches_within_the_turn(reactor: Any) -> None:
    listener = _listener()
    proto = RPCClientProtocol(multi=True, clock=reactor)
    try:
        await TCP4ClientEndpoint(reactor, "127.0.0.1", listener.getsockname()[1]).connect(
            Factory.forProtocol(lambda: proto))
        peer, _ = listener.accept()  # already in the backlog: connect() has completed
        peer.settimeout(0.5)
        try:
            await _check_batches(reactor, proto, peer.recv)
        finally:
            peer.close()
    finally:
        await proto.close()
        listener.close()


@pytest_twisted.ensureDeferred
async def test_tls_calls_leave_in_batches_within_the_turn(reactor: Any, tmp_path: Path) -> None:
    pki = PKI()
    cert, key = PKI.write(pki.server("dc1", "s1"), tmp_path, "server")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = _listener()
    proto = RPCClientProtocol(multi=True, clock=reactor)
    accepted = deferToThread(lambda: context.wrap_socket(listener.accept()[0], server_side=True))
    try:
        creator = tssl.optionsForClientTLS(
            "server.dc1.consul", trustRoot=tssl.Certificate.loadPEM(pki.ca_pem))
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listener.getsockname()[1])
        await wrapClientTLS(creator, endpoint).connect(Factory.forProtocol(lambda: proto))
        peer = await accepted  # the handshake ran in the thread while the reactor ran
        peer.settimeout(0.5)
        try:
            await _check_batches(reactor, proto, peer.recv)
        finally:
            peer.close()
    finally:
        await proto.close()
        listener.close()
