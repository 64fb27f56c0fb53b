"""The splice pump on loopback sockets: nothing may be stranded in a pipe."""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import termios
import time

import pytest

from wanfedtx.gateway.pump import Direction, splice_available

pytestmark = pytest.mark.skipif(not splice_available(), reason="splice(2) is Linux-only")


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as ls:
        a = socket.create_connection(ls.getsockname())
        b, _ = ls.accept()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setblocking(False)
    return a, b


def readable_bytes(s: socket.socket) -> int:
    buf = fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


def test_pump_bound_leaves_no_bytes_behind_without_asking_for_output() -> None:
    client, relay_in = tcp_pair()
    relay_out, server = tcp_pair()
    payload = bytes(range(256)) * 4096  # 1 MiB: more than 8 reads of a 64 KiB pipe
    client.setblocking(True)
    client.sendall(payload)
    deadline = time.monotonic() + 10
    while readable_bytes(relay_in) < len(payload) and time.monotonic() < deadline:
        select.select([relay_in], [], [], 0.05)
    d = Direction(relay_in.fileno(), relay_out.fileno(), b"")
    d.open_pipe(65536)
    try:
        d.pump()  # one turn: bounded number of rounds
        # whatever is still in the pipe must be flagged so the loop asks for EPOLLOUT
        assert d.in_pipe == 0 or d.want_out
        got = bytearray()
        while len(got) < len(payload) and time.monotonic() < deadline:
            d.pump()
            select.select([server], [], [], 0.05)
            try:
                got += server.recv(1 << 20)
            except BlockingIOError:
                pass
        assert bytes(got) == payload
    finally:
        d.close()
        for s in (client, relay_in, relay_out, server):
            s.close()
