"""The loop path's epoll batch: an event for a socket closed earlier in the same batch is stale.

A batch can hold an event for a socket the loop closes while handling an earlier event of the
same batch; a connection accepted later in that batch may get the same descriptor number. The
stale event must not reach the new connection (before the fix a hang-up meant for the old
socket closed the new connection during its TLS handshake).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from gateway_hellos import real_client_hello
from loop_support import close_relay_loop, relay_loop_to

from wanfedtx.gateway.conn import State
from wanfedtx.gateway.loop import RelayLoop
from wanfedtx.gateway.pump import splice_available

pytestmark = pytest.mark.skipif(not splice_available(), reason="splice(2) is Linux-only")
SNI = "pri.server.primary.consul"


@pytest.fixture
def backend() -> Iterator[socket.socket]:
    ls = socket.create_server(("127.0.0.1", 0))
    yield ls
    ls.close()


@pytest.fixture
def relay(backend: socket.socket) -> Iterator[RelayLoop]:
    loop = relay_loop_to(backend.getsockname()[1], SNI)
    yield loop  # driven by hand, batch by batch: the thread is never started
    close_relay_loop(loop)


def accepted(relay: RelayLoop) -> int:
    """Accept one waiting connection (its hello is read at once); its downstream descriptor."""
    before = set(relay._fds)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        select.select([relay.sock], [], [], 0.05)
        relay._dispatch([(relay.sock.fileno(), select.EPOLLIN)], relay.sock.fileno())
        new = [fd for fd, c in relay._fds.items() if fd not in before and fd == c.down_fd]
        if new:
            return new[0]
    raise AssertionError("the relay accepted nothing")


def test_event_for_a_socket_closed_earlier_in_the_batch_skips_the_new_connection(
    relay: RelayLoop, backend: socket.socket
) -> None:
    gw = relay.sock.getsockname()
    first = socket.create_connection(gw)
    first.sendall(real_client_hello(SNI))
    old_fd = accepted(relay)
    old = relay._fds[old_fd]
    # the backend's kernel completes the handshake: a local connect is up at once (relaying)
    assert old.core.state is State.RELAYING
    up_fd = old.up_fd

    # the next client is waiting in the accept queue with its hello
    second = socket.create_connection(gw)
    second.sendall(real_client_hello(SNI))
    # the first client resets: its socket reports an error in the same batch as the listener
    first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    first.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not select.select([relay.sock], [], [], 0.05)[0]:
        pass
    # batch: the old connection's hang-up (closes it, freeing its numbers), the listener
    # (the new connection may take a freed number), then stale events for the old numbers
    hup = select.EPOLLHUP | select.EPOLLERR
    relay._dispatch(
        [
            (old_fd, hup),
            (relay.sock.fileno(), select.EPOLLIN),
            (old_fd, hup),
            (up_fd, hup),
        ],
        relay.sock.fileno(),
    )
    assert old.core.state is State.CLOSED
    new = [c for c in relay._conns if c is not old]
    assert len(new) == 1
    c = new[0]
    assert {c.down_fd, c.up_fd} & {old_fd, up_fd}, "no descriptor number was reused"
    assert c.core.state is State.RELAYING  # untouched by the stale hang-ups
    second.close()
