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


async def _connect(reactor: Any, proto: RPCClientProtocol, listener: socket.socket,
                   tls_dir: Path | None) -> Any:
    """Connect ``proto`` to ``listener`` (over TLS when given a directory for the server's
    certificate); return the peer's accepted socket."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listener.getsockname()[1])
    if tls_dir is None:
        await endpoint.connect(Factory.forProtocol(lambda: proto))
        return listener.accept()[0]  # already in the backlog: connect() has completed
    pki = PKI()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*PKI.write(pki.server("dc1", "s1"), tls_dir, "server"))
    accepted = deferToThread(lambda: context.wrap_socket(listener.accept()[0], server_side=True))
    creator = tssl.optionsForClientTLS(
        "server.dc1.consul", trustRoot=tssl.Certificate.loadPEM(pki.ca_pem))
    await wrapClientTLS(creator, endpoint).connect(Factory.forProtocol(lambda: proto))
    return await accepted  # the handshake ran in the thread while the reactor ran


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest_twisted.ensureDeferred
async def test_calls_leave_in_batches_within_the_turn(
    reactor: Any, tmp_path: Path, tls: bool
) -> None:
    listener = _listener()
    proto = RPCClientProtocol(multi=True, clock=reactor)
    try:
        peer = await _connect(reactor, proto, listener, tmp_path if tls else None)
        peer.settimeout(0.5)
        try:
            await _check_batches(reactor, proto, peer.recv)
        finally:
            peer.close()
    finally:
        await proto.close()
        listener.close()
