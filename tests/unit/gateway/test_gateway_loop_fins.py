"""The loop path's relays deliver every byte and every FIN at the edges of the pump's rules.

Two faults the compiled relay's tests found in both relays (`relaynative`'s C and `pump.py`):
an end of stream read in the pump's last round (its fairness bound) was never forwarded, and a
socket that had both FINs (epoll then reports a hang-up whatever the mask) while its last bytes
waited for a slow reader was closed as a hang-up, dropping them; and a pair that could not get
its pipes (out of descriptors) ended the Python relay's whole loop. Each test runs the whole
loop (accept, hello, connect, relay), hand-driven turn by turn.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import termios
import time
from collections.abc import Iterator

import pytest
from gateway_hellos import real_client_hello
from loop_support import backend_listener, close_relay_loop, loop_turn, relay_loop_to

from wanfedtx.gateway.errors import need
from wanfedtx.gateway.loop import PARKED, RelayLoop
from wanfedtx.gateway.pump import splice_available

pytestmark = pytest.mark.skipif(not splice_available(), reason="splice(2) is Linux-only")
SNI = "pri.server.primary.consul"
HELLO = real_client_hello(SNI)
RELAYS = ["python", "c"]


@pytest.fixture
def backend() -> Iterator[socket.socket]:
    yield from backend_listener()


def make_loop(
    relay: str, backend: socket.socket, pipe_size: int, sndbuf: int | None = None
) -> RelayLoop:
    loop = relay_loop_to(backend.getsockname()[1], SNI, relay, pipe_size=pipe_size)
    # big receive buffers on the accepted sockets (inherited from the listener), so the client's
    # whole stream can wait in the gateway's socket before the relay's first turn
    loop.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    if sndbuf is not None:  # a small send buffer toward the client: the pipe has to wait
        loop.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return loop


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def drive(loop: RelayLoop, done: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        loop_turn(loop, 0.01)


def read_to_end(loop: RelayLoop, s: socket.socket) -> bytes:
    """Turn the loop until ``s`` (non-blocking) reads its end of stream; what it read."""
    got = bytearray()
    eof = [False]

    def at_the_end() -> bool:
        eof[0] = eof[0] or read_some(s, got)
        return eof[0]

    drive(loop, at_the_end)
    return bytes(got)


def unsent(s: socket.socket) -> int:
    """Bytes (and the FIN) in ``s``'s send queue the peer has not acknowledged (SIOCOUTQ)."""
    return int(struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0])


def read_some(s: socket.socket, into: bytearray) -> bool:
    """Read what is there; True at end of stream."""
    while True:
        try:
            chunk = s.recv(1 << 20)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        into += chunk


@pytest.mark.parametrize("relay", RELAYS)
def test_a_fin_read_in_the_pumps_last_round_is_forwarded(
    relay: str, backend: socket.socket
) -> None:
    pipe = 65536
    loop = make_loop(relay, backend, pipe)
    # after the hello read (16 KiB) exactly seven full pipes and the FIN wait in the socket
    body = pattern(16384 - len(HELLO) + 7 * pipe)
    client = socket.create_connection(loop.address)
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        client.sendall(HELLO + body)
        client.shutdown(socket.SHUT_WR)
        drive(loop, lambda: loop._conns)  # accepted, hello read, connected, relaying
        server, _ = backend.accept()
        server.setblocking(False)
        assert read_to_end(loop, server) == HELLO + body
        server.close()
        client.setblocking(False)
        assert read_to_end(loop, client) == b""  # the server's FIN reaches the client
        drive(loop, lambda: not loop._conns)
    finally:
        client.close()
        close_relay_loop(loop)


def test_a_slow_reader_gets_every_byte_after_both_fins(backend: socket.socket) -> None:
    """The Python relay (the compiled one's own test, test_gateway_relaynative.py, owns its
    sockets and sets the buffers this needs on them)."""
    loop = make_loop("python", backend, 4096, sndbuf=65536)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    client.connect(loop.address)
    client.setblocking(False)
    try:
        client.sendall(HELLO)
        client.shutdown(socket.SHUT_WR)
        drive(loop, lambda: loop._conns)
        # room in the gateway's upstream socket for the whole answer and the server's FIN
        conn = next(iter(loop._conns))
        need(conn.up, "upstream").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        server, _ = backend.accept()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        request = bytearray()
        server.setblocking(False)
        drive(loop, lambda: read_some(server, request))
        assert bytes(request) == HELLO
        answer = pattern(1 << 20)  # the slow client's buffers hold a fraction of it
        server.setblocking(True)
        server.sendall(answer)
        server.shutdown(socket.SHUT_WR)
        # until the gateway's upstream socket has every byte and the FIN (the server's send
        # queue is empty) and the pipe toward the client waits for room: both FINs are in, and
        # the client reads nothing yet
        drive(loop, lambda: unsent(server) == 0)
        drive(loop, lambda: conn.mask_up == PARKED or not loop._conns)
        # the hung-up upstream socket is out of the epoll set until its bytes can move (epoll
        # would report the hang-up on every wait, whatever the mask)
        assert loop._conns, "closed as a hang-up with bytes still to deliver"
        assert all(fd != conn.up_fd for fd, _ in loop._ep.poll(0))
        for _ in range(10):
            loop_turn(loop, 0.005)
        got = read_to_end(loop, client)
        assert len(got) == len(answer) and got == answer
        drive(loop, lambda: not loop._conns)  # closed as both sides closed, not a hang-up
        assert loop.listener_stats.downstream_cx_active == 0
        server.close()
    finally:
        client.close()
        close_relay_loop(loop)


def test_a_pair_that_cannot_get_its_pipes_is_closed_and_the_loop_goes_on(
    backend: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python relay out of descriptors for a pair's pipes (EMFILE) closes that connection;
    it had ended the whole relay loop (the compiled relay closes the pair the same way)."""
    loop = make_loop("python", backend, 65536)
    real_get = loop._pipes.get

    def no_descriptors() -> tuple[int, int]:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(loop._pipes, "get", no_descriptors)
    first = socket.create_connection(loop.address)
    try:
        first.sendall(HELLO)
        drive(loop, lambda: loop.listener_stats.downstream_cx_total == 1 and not loop._conns)
        first.setblocking(False)
        assert read_to_end(loop, first) == b""  # closed, nothing relayed
        backend.accept()[0].close()  # its upstream, connected before the pipes were asked for
        monkeypatch.setattr(loop._pipes, "get", real_get)
        with socket.create_connection(loop.address) as second:
            second.sendall(HELLO)
            drive(loop, lambda: len(loop._conns) == 1)
            server, _ = backend.accept()
            server.setblocking(False)
            got = bytearray()
            drive(loop, lambda: read_some(server, got) or len(got) >= len(HELLO))
            assert bytes(got[: len(HELLO)]) == HELLO
            server.close()
    finally:
        first.close()
        close_relay_loop(loop)
