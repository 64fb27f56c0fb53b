"""A relayed connection on the loop path leaves no reference cycle behind once it is closed.

The gateway process runs with ``tune_gc``'s thresholds: a young collection only after 20,000
net container allocations, an older one after 100 of those. Whatever a closed connection leaves
in a cycle waits for the cyclic collector, and a pair that was alive at a young collection (a
pooled RPC connection) waits for a collection that, at the gateway's allocation rate, does not
come for hours: RSS rose as a slope in the 30-minute soak. Here, with the collector switched
off, hundreds of connections are relayed and closed (orderly and by reset) and nothing of
theirs may stay: no :class:`~wanfedtx.gateway.pump.Direction`, no connection record, and the
collector's young-generation count back where it was. Driven batch by batch on real sockets.
"""

from __future__ import annotations

import gc
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest
from gateway_hellos import real_client_hello
from loop_support import backend_listener, close_relay_loop, relay_loop_to

from wanfedtx.gateway.loop import RelayLoop
from wanfedtx.gateway.loopsock import LoopConn
from wanfedtx.gateway.pump import Direction, splice_available

pytestmark = pytest.mark.skipif(not splice_available(), reason="splice(2) is Linux-only")
SNI = "pri.server.primary.consul"
HELLO = real_client_hello(SNI)
ROUNDS = 200


@pytest.fixture
def backend() -> Iterator[socket.socket]:
    yield from backend_listener(256)


@pytest.fixture
def relay(backend: socket.socket) -> Iterator[RelayLoop]:
    loop = relay_loop_to(backend.getsockname()[1], SNI)
    yield loop
    close_relay_loop(loop)


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def turn(relay: RelayLoop) -> None:
    relay._dispatch(relay._ep.poll(0.01), relay.sock.fileno())


def turns_until(relay: RelayLoop, done: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 10
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        turn(relay)


def alive(cls: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is cls)


def relay_and_close(relay: RelayLoop, backend: socket.socket, i: int) -> None:
    """One connection relayed both ways, then closed: by FIN from both ends, or by a reset."""
    client = socket.create_connection(relay.address)
    client.sendall(HELLO)
    turns_until(relay, lambda: select.select([backend], [], [], 0)[0], "the upstream connect")
    up, _ = backend.accept()
    turns_until(relay, lambda: select.select([up], [], [], 0)[0], "the hello upstream")
    up.recv(65536)
    up.sendall(b"answer")
    client.settimeout(10)
    got = b""
    while len(got) < 6:
        got += relay_pump_recv(relay, client)
    if i % 2:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    else:
        client.shutdown(socket.SHUT_WR)
        up.shutdown(socket.SHUT_WR)
        client.close()
    turns_until(relay, lambda: not relay._conns, "the connection to close")
    up.close()


def relay_pump_recv(relay: RelayLoop, s: socket.socket) -> bytes:
    turn(relay)
    if select.select([s], [], [], 0)[0]:
        return s.recv(65536)
    return b""


def test_closed_connections_leave_nothing_for_the_cyclic_collector(
    relay: RelayLoop, backend: socket.socket, no_collector: None
) -> None:
    relay_and_close(relay, backend, 0)  # the first one builds the pipe pool
    base_directions, base_conns = alive(Direction), alive(LoopConn)
    base_young = gc.get_count()[0]
    for i in range(ROUNDS):
        relay_and_close(relay, backend, i)
    assert relay.listener_stats.downstream_cx_active == 0
    assert relay.stats.cluster(SNI).upstream_cx_total == ROUNDS + 1
    assert alive(Direction) - base_directions == 0
    assert alive(LoopConn) - base_conns == 0
    # two objects per connection were left before; what remains is the test's own noise
    assert gc.get_count()[0] - base_young < ROUNDS // 2
