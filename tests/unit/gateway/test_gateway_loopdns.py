"""The loop path connects to an endpoint given by host name once the resolver answers.

Driven turn by turn on real sockets: the name is looked up off the loop thread
(``loopdns.Resolver``), the answer wakes the loop through its wake pipe, and the connection is
relayed to the resolved address; with either relay.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from gateway_hellos import real_client_hello
from loop_support import backend_listener, close_relay_loop, loop_turn, relay_loop_to

from wanfedtx.gateway.pump import splice_available

pytestmark = pytest.mark.skipif(not splice_available(), reason="splice(2) is Linux-only")
SNI = "pri.server.primary.consul"


@pytest.fixture
def backend() -> Iterator[socket.socket]:
    yield from backend_listener()


@pytest.mark.parametrize("relay", ["python", "c"])
def test_an_endpoint_named_by_host_name_is_resolved_then_relayed(
    relay: str, backend: socket.socket
) -> None:
    loop = relay_loop_to(backend.getsockname()[1], SNI, relay, address="localhost")
    hello = real_client_hello(SNI)
    try:
        with socket.create_connection(loop.address) as client:
            client.sendall(hello)
            backend.setblocking(False)
            deadline = time.monotonic() + 10
            server = None
            while server is None:
                assert time.monotonic() < deadline, "never connected to the resolved address"
                loop_turn(loop, 0.01)
                try:
                    server, _ = backend.accept()
                except BlockingIOError:
                    pass
            conn = next(iter(loop._conns))
            assert not conn.resolving  # it went through the resolver, and came back
            server.setblocking(False)
            got = b""
            while len(got) < len(hello):
                assert time.monotonic() < deadline, "the hello was not relayed"
                loop_turn(loop, 0.01)
                try:
                    got += server.recv(65536)
                except BlockingIOError:
                    pass
            assert got == hello
            server.close()
    finally:
        close_relay_loop(loop)
