"""The loop path's pipe reuse: pooled pipes are empty, sized, bounded; a FIN uses the socket."""

from __future__ import annotations

import fcntl
import os
import select
import socket
import time

import pytest
from loop_support import tcp_pair

from wanfedtx.gateway.pump import Direction, PipePool, splice_available

pytestmark = pytest.mark.skipif(not splice_available(), reason="splice(2) is Linux-only")
F_GETPIPE_SZ = 1032


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def recv_all(s: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    got = bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        select.select([s], [], [], 0.05)
        try:
            chunk = s.recv(n - len(got))
        except BlockingIOError:
            continue
        if not chunk:
            break
        got += chunk
    return bytes(got)


def test_pool_hands_back_the_same_sized_nonblocking_pipe() -> None:
    pool = PipePool(65536)
    try:
        r, w = pool.get()
        assert fcntl.fcntl(w, F_GETPIPE_SZ) == 65536
        assert fcntl.fcntl(r, fcntl.F_GETFL) & os.O_NONBLOCK
        pool.put(r, w)
        assert pool.get() == (r, w)  # reused, not a new pipe
        pool.put(r, w)
    finally:
        pool.close()
    assert not is_open(r) and not is_open(w)


def test_pool_keeps_at_most_keep_pipes() -> None:
    pool = PipePool(4096, keep=2)
    pipes = [pool.get() for _ in range(3)]
    for p in pipes:
        pool.put(*p)
    try:
        assert [is_open(p[0]) for p in pipes] == [True, True, False]
    finally:
        pool.close()


def test_a_drained_direction_returns_its_pipe_and_forwards_fin_through_the_socket() -> None:
    client, relay_in = tcp_pair()
    relay_out, server = tcp_pair()
    pool = PipePool(65536)
    d = Direction(relay_in.fileno(), relay_out.fileno(), b"hello", relay_out)
    d.pipe_r, d.pipe_w = pipe = pool.get()
    try:
        client.sendall(b"world")
        client.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        while not d.finished and time.monotonic() < deadline:
            select.select([relay_in], [], [], 0.05)
            d.pump()
        assert recv_all(server, 11) == b"helloworld"
        assert server.recv(1) == b""  # the FIN went through relay_out.shutdown
        assert d.in_pipe == 0
        d.close(pool)
        assert pool.get() == pipe
        pool.put(*pipe)
    finally:
        for s in (client, relay_in, relay_out, server):
            s.close()
        pool.close()


def test_a_direction_with_bytes_in_its_pipe_closes_it_instead_of_pooling() -> None:
    client, relay_in = tcp_pair()
    relay_out, server = tcp_pair()
    pool = PipePool(65536)
    d = Direction(relay_in.fileno(), relay_out.fileno(), b"", relay_out)
    r, w = d.pipe_r, d.pipe_w = pool.get()
    try:
        os.write(w, b"stranded")  # as if read from relay_in and not yet written out
        d.in_pipe = 8
        d.close(pool)
        assert not is_open(r) and not is_open(w)
        r2, w2 = pool.get()  # a fresh pipe (it may get the same numbers), and it is empty
        with pytest.raises(BlockingIOError):
            os.read(r2, 16)
        pool.put(r2, w2)
    finally:
        for s in (client, relay_in, relay_out, server):
            s.close()
        pool.close()


def test_a_direction_whose_socket_failed_never_pools_its_pipe() -> None:
    client, relay_in = tcp_pair()
    relay_out, server = tcp_pair()
    pool = PipePool(65536)
    d = Direction(relay_in.fileno(), relay_out.fileno(), b"x", relay_out)
    r, w = d.pipe_r, d.pipe_w = pool.get()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    server.close()  # RST: writing to relay_out fails
    deadline = time.monotonic() + 10
    try:
        with pytest.raises(OSError):
            while time.monotonic() < deadline:
                d.pending = b"x" * 65536
                d.flush_pending()
                # the RST arrives asynchronously: it makes relay_out readable (the error)
                select.select([relay_out], [], [], 0.1)
        assert d.broken
        d.close(pool)
        assert not is_open(r) and not is_open(w)
    finally:
        for s in (client, relay_in, relay_out):
            s.close()
        pool.close()
