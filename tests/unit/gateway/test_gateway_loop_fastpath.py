"""The loop path's per-connection shortcuts still serve every connection correctly.

Batched accepts (every waiting connection in one listener event), the hello deadline armed only
for an incomplete hello, the relay starting in the accept turn when the upstream connect is up
at once, the ``EPOLLOUT`` path when it is not, the last FIN carried by the close, and the
ClientHello reader's whole-hello fast path agreeing with its general path. Driven batch by batch
(the loop thread is never started) on real sockets.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest
from gateway_hellos import real_client_hello, reframe
from loop_support import backend_listener, close_relay_loop, relay_loop_to, tcp_pair

from wanfedtx.gateway.clienthello import MALFORMED, ClientHelloReader, Rejected
from wanfedtx.gateway.conn import State
from wanfedtx.gateway.loop import CONNECT_DEADLINE, HELLO_DEADLINE, RelayLoop
from wanfedtx.gateway.loopsock import accept_queue
from wanfedtx.gateway.pump import Direction, PipePool, splice_available

pytestmark = pytest.mark.skipif(not splice_available(), reason="splice(2) is Linux-only")
SNI = "pri.server.primary.consul"
HELLO = real_client_hello(SNI)


@pytest.fixture
def backend() -> Iterator[socket.socket]:
    yield from backend_listener()


@pytest.fixture
def relay(backend: socket.socket) -> Iterator[RelayLoop]:
    loop = relay_loop_to(backend.getsockname()[1], SNI)
    yield loop
    close_relay_loop(loop)


def listener_event(relay: RelayLoop) -> None:
    fd = relay.sock.fileno()
    relay._dispatch([(fd, select.EPOLLIN)], fd)


def turn(relay: RelayLoop) -> None:
    """One loop turn: whatever epoll reports now."""
    relay._dispatch(relay._ep.poll(0.05), relay.sock.fileno())


def recv_exactly(s: socket.socket, n: int) -> bytes:
    s.settimeout(10)
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            break
        got += chunk
    return got


def wait_readable(s: socket.socket) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not select.select([s], [], [], 0.05)[0]:
        pass


def test_one_listener_event_accepts_every_waiting_connection_and_relays_each(
    relay: RelayLoop, backend: socket.socket
) -> None:
    gw = relay.sock.getsockname()
    clients = []
    for i in range(20):
        s = socket.create_connection(gw)
        s.sendall(HELLO + f"after-{i:02d}".encode())
        clients.append(s)
    wait_readable(relay.sock)
    listener_event(relay)  # one event: the batch takes all 20
    assert len(relay._conns) == 20
    assert all(c.core.state is State.RELAYING for c in relay._conns)
    assert relay.listener_stats.downstream_cx_total == 20
    # every hello went upstream unchanged, each on its own upstream connection
    seen = set()
    for _ in range(20):
        up, _ = backend.accept()
        with up:
            got = recv_exactly(up, len(HELLO))
            assert got == HELLO
            seen.add(up.getpeername())
    assert len(seen) == 20
    for s in clients:
        s.close()


def test_the_hello_deadline_is_armed_only_for_an_incomplete_hello(relay: RelayLoop) -> None:
    gw = relay.sock.getsockname()
    whole = socket.create_connection(gw)
    whole.sendall(HELLO)
    wait_readable(relay.sock)
    listener_event(relay)
    assert [t[2] for t in relay._timers] == []  # complete at accept: relaying, no deadline
    part = socket.create_connection(gw)
    part.sendall(HELLO[:100])
    wait_readable(relay.sock)
    listener_event(relay)
    waiting = [c for c in relay._conns if c.core.state is State.HELLO]
    assert len(waiting) == 1
    assert [t[2] for t in relay._timers] == [HELLO_DEADLINE]
    # the rest of the hello arrives: it relays like the other one
    part.sendall(HELLO[100:])
    deadline = time.monotonic() + 10
    while waiting[0].core.state is State.HELLO and time.monotonic() < deadline:
        turn(relay)
    assert waiting[0].core.state is State.RELAYING
    whole.close()
    part.close()


def test_a_connect_not_up_at_once_waits_for_epollout_then_relays(
    relay: RelayLoop, backend: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as with a remote endpoint: the connect is still in progress when it returns
    monkeypatch.setattr(RelayLoop, "_connected_now", staticmethod(lambda s: False))
    client = socket.create_connection(relay.sock.getsockname())
    client.sendall(HELLO)
    wait_readable(relay.sock)
    listener_event(relay)
    (c,) = relay._conns
    assert c.core.state is State.CONNECTING
    assert c.mask_up == select.EPOLLOUT
    assert [t[2] for t in relay._timers] == [CONNECT_DEADLINE]
    deadline = time.monotonic() + 10
    while c.core.state is State.CONNECTING and time.monotonic() < deadline:
        turn(relay)
    assert c.core.state is State.RELAYING
    assert c.mask_up == select.EPOLLIN
    up, _ = backend.accept()
    with up:
        assert recv_exactly(up, len(HELLO)) == HELLO
    client.close()


def test_a_refused_connect_not_up_at_once_still_fails_over_to_closing(
    relay: RelayLoop, backend: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RelayLoop, "_connected_now", staticmethod(lambda s: False))
    logged: list[object] = []
    monkeypatch.setattr(
        relay.reactor, "callFromThread", lambda f, *a, **kw: logged.append(a), raising=False
    )
    backend.close()  # nothing listens there any more: the connect is refused
    client = socket.create_connection(relay.sock.getsockname())
    client.sendall(HELLO)
    wait_readable(relay.sock)
    listener_event(relay)
    (c,) = relay._conns
    deadline = time.monotonic() + 10
    while c.core.state is not State.CLOSED and time.monotonic() < deadline:
        turn(relay)
    assert c.core.state is State.CLOSED
    assert relay.stats.cluster(SNI).upstream_cx_connect_fail == 1
    assert logged  # the connect failure and the lack of endpoints were logged
    client.close()


class RecordingSocket:
    """A destination socket that records ``shutdown`` calls and forwards them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.shutdowns = 0

    def shutdown(self, how: int) -> None:
        self.shutdowns += 1
        self.sock.shutdown(how)


@pytest.mark.parametrize("other_finished", [False, True])
def test_the_last_fin_is_left_to_the_close(other_finished: bool) -> None:
    """A direction forwards its FIN with shutdown unless the opposite direction is over too
    (then the pair is closed next, and close sends the FIN)."""
    client, relay_in = tcp_pair()
    relay_out, server = tcp_pair()
    pool = PipePool(65536)
    rec = RecordingSocket(relay_out)
    d = Direction(relay_in.fileno(), relay_out.fileno(), b"", rec)  # type: ignore[arg-type]
    other = Direction(relay_out.fileno(), relay_in.fileno(), b"")
    other.finished = other_finished
    d.other = other
    d.pipe_r, d.pipe_w = pool.get()
    try:
        client.sendall(b"data")
        client.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        while not d.finished and time.monotonic() < deadline:
            select.select([relay_in], [], [], 0.05)
            d.pump()
        assert d.finished
        assert rec.shutdowns == (0 if other_finished else 1)
        relay_out.close()  # what the loop's teardown does next
        server.setblocking(True)
        server.settimeout(10)
        assert recv_exactly(server, 4) == b"data"
        assert server.recv(1) == b""  # a clean FIN either way, never a reset
        d.close(pool)
    finally:
        for s in (client, relay_in, relay_out, server):
            s.close()
        pool.close()


@pytest.mark.parametrize(
    "hello",
    [
        HELLO,
        real_client_hello(None),
        real_client_hello("x.example", [b"h2", b"http/1.1"]),
        HELLO + b"and-more",
    ],
)
def test_the_whole_hello_fast_path_agrees_with_the_general_path(hello: bytes) -> None:
    whole = ClientHelloReader()
    fast = whole.receive_data(hello)
    slow = ClientHelloReader()
    out = None
    for i in range(len(hello)):
        out = slow.receive_data(hello[i : i + 1])
    assert fast == out
    assert whole.buffered == slow.buffered == hello
    # the same hello split over records goes the general way, with the same answer
    assert ClientHelloReader().receive_data(reframe(hello, 100)) == fast


def test_a_malformed_body_in_one_record_is_rejected_by_the_fast_path() -> None:
    bad = bytearray(HELLO)
    bad[9 + 34] = 40  # session id length > 32
    out = ClientHelloReader().receive_data(bytes(bad))
    assert isinstance(out, Rejected) and out.reason == MALFORMED


def test_accept_queue_counts_the_connections_waiting_on_a_listener() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=128) as ls:
        assert accept_queue(ls) == 1  # epoll said readable: always try once
        clients = [socket.create_connection(ls.getsockname()) for _ in range(7)]
        assert accept_queue(ls) == 7
        clients += [socket.create_connection(ls.getsockname()) for _ in range(70)]
        assert accept_queue(ls, 64) == 64  # a bounded batch; the rest on the next turn
        for s in clients:
            s.close()
