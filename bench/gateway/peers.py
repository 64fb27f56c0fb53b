"""The load side of ``run.py``: certificates, and the processes every target gets alike.

Each ``*_main`` runs in its own process (``run.py --role NAME``): the TLS echo backend (RTT and
full-TLS connections), the handshake-shaped peer and its clients (a real ClientHello, fixed
flights, no crypto), the bulk sink (``splice(2)`` into /dev/null) and the bulk senders
(``sendfile(2)`` after a real ClientHello). ``cpuconn.py`` uses the same pieces.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from pathlib import Path

SNI = "pri.server.primary.consul"
SINK_SNI = "sink." + SNI  # routed to the bulk sink by every proxy
SHAPED_SNI = "shaped." + SNI  # routed to the handshake-shaped peer
BLOB = 16 << 20  # bytes of the page-cached file the bulk senders sendfile() from
F_SETPIPE_SZ = 1031
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
CONN_PROCS = 16  # handshake-shaped client processes (fewer leave haproxy idle)
TLS_CONN_PROCS = 8  # full-TLS client processes (bound by the load core's crypto)
ECHO = 64  # bytes echoed once per full-TLS connection



# ------------------------------------------------------------------------------------------
# certificates


def make_certs(d: Path) -> None:
    """The project's agent CA and a server cert for node ``pri`` in DC ``primary``."""
    from wanfedtx.tls.certs import create_ca, create_cert

    ca = create_ca()
    cert = create_cert(ca, "server", dc="primary", node="pri")
    (d / "ca.pem").write_bytes(ca.cert_pem)
    (d / "server.pem").write_bytes(cert.cert_pem)
    (d / "server-key.pem").write_bytes(cert.key_pem)
    (d / "blob").write_bytes(os.urandom(BLOB))


# ------------------------------------------------------------------------------------------
# TLS backend (a separate process, thread per connection): echo for the RTT and conns/s tests


def backend_main(port: int, certdir: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certdir / "server.pem", certdir / "server-key.pem")
    ls = socket.create_server(("127.0.0.1", port), backlog=4096)

    def serve(raw: socket.socket) -> None:
        try:
            with ctx.wrap_socket(raw, server_side=True) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    s.sendall(b)
        except (OSError, ssl.SSLError):
            pass

    print("ready", flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


# ------------------------------------------------------------------------------------------
# bulk sink (a separate process): splice every connection into /dev/null, count the bytes.
# A line on stdin asks for the running total, answered on stdout.


SERVER_FLIGHT = 2000  # bytes, about a TLS 1.3 ServerHello..Finished with one P-256 cert
CLIENT_FLIGHT = 80  # bytes, about a client Finished plus a 1-byte application record


def accept_ready(ls: socket.socket, ep: select.epoll) -> list[socket.socket]:
    """Accept every pending connection on the non-blocking listener ``ls``; each is made
    non-blocking and registered for reading with ``ep``."""
    out = []
    while True:
        try:
            c, _ = ls.accept()
        except BlockingIOError:
            return out
        c.setblocking(False)
        ep.register(c.fileno(), select.EPOLLIN)
        out.append(c)


def shaped_exchange(s: socket.socket, hello: bytes, fin: bytes, buf: bytearray) -> None:
    """One handshake-shaped connection on the connected socket ``s``: the hello, the server's
    flight read into ``buf``, the client's flight, the 1-byte answer."""
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(hello)
    got = 0
    view = memoryview(buf)
    while got < SERVER_FLIGHT:
        n = s.recv_into(view[got:])
        if not n:
            raise ConnectionError("closed during the server flight")
        got += n
    s.sendall(fin)
    if s.recv(1) != b"x":
        raise ConnectionError("closed before the reply")


def shaped_main(port: int) -> None:
    """Handshake-shaped peer for the new-connections test, one epoll loop, no crypto.

    Per connection: read one whole TLS record (the ClientHello), answer SERVER_FLIGHT bytes,
    read CLIENT_FLIGHT bytes, answer 1 byte, close when the client has closed. The proxies see
    a real hello and the same packet exchange as a TLS 1.3 handshake plus a 1-byte echo.
    """
    ls = socket.create_server(("127.0.0.1", port), backlog=4096)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns: dict[int, tuple[socket.socket, bytearray, list[int]]] = {}
    flight = b"s" * SERVER_FLIGHT
    print("ready", flush=True)
    while True:
        for fd, _ev in ep.poll():
            if fd == ls.fileno():
                for c in accept_ready(ls, ep):
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[c.fileno()] = (c, bytearray(), [0])
                continue
            c, buf, stage = conns[fd]
            try:
                data = c.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            buf += data
            if not data:
                ep.unregister(fd)
                conns.pop(fd)[0].close()
                continue
            if stage[0] == 0 and len(buf) >= 5 and len(buf) >= 5 + struct.unpack("!H", buf[3:5])[0]:
                del buf[: 5 + struct.unpack("!H", buf[3:5])[0]]
                stage[0] = 1
                c.sendall(flight)  # fits the socket buffer of a fresh connection
            if stage[0] == 1 and len(buf) >= CLIENT_FLIGHT:
                # answer, then wait for the client's close: the connecting sides close first,
                # so TIME_WAIT stays with them (a listener-side TIME_WAIT hit by a reused port
                # costs a 1 s SYN retransmit and made the haproxy and nginx rounds bimodal)
                c.sendall(b"x")
                stage[0] = 2
                del buf[:]


def wait_start() -> float:
    """Tell the controller this client is ready; return the start time it sends back."""
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    while time.monotonic() < start_at:
        time.sleep(0.001)
    return start_at


def shaped_client_main(port: int, certdir: Path, seconds: float) -> None:
    """Sequential handshake-shaped connections; prints like conns_main."""
    ctx = client_ctx(certdir)
    hello = client_hello(ctx, SHAPED_SNI)
    fin = b"f" * CLIENT_FLIGHT
    ok = failed = 0
    first = ""
    buf = bytearray(SERVER_FLIGHT)
    end = wait_start() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                shaped_exchange(s, hello, fin, buf)
            ok += 1
        except OSError as e:
            failed += 1
            first = first or f"{type(e).__name__}: {e}"
    print(json.dumps({"ok": ok, "failed": failed, "first_error": first}), flush=True)


def sink_main(port: int) -> None:
    ls = socket.create_server(("127.0.0.1", port), backlog=4096)
    ls.setblocking(False)
    pr, pw = os.pipe()
    fcntl_setpipe(pw, 1 << 20)
    devnull = os.open(os.devnull, os.O_WRONLY)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    ep.register(0, select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    total = 0
    print("ready", flush=True)
    while True:
        for fd, _ev in ep.poll():
            if fd == ls.fileno():
                for c in accept_ready(ls, ep):
                    conns[c.fileno()] = c
            elif fd == 0:
                if not os.read(0, 4096):
                    return
                sys.stdout.write(f"{total}\n")
                sys.stdout.flush()
            else:
                while True:
                    try:
                        n = os.splice(fd, pw, 1 << 20, flags=SPLICE_FLAGS)
                    except BlockingIOError:
                        break
                    except OSError:
                        n = 0
                    if n == 0:
                        ep.unregister(fd)
                        conns.pop(fd).close()
                        break
                    total += n
                    while n:
                        n -= os.splice(pr, devnull, n, flags=os.SPLICE_F_MOVE)


def fcntl_setpipe(fd: int, size: int) -> None:
    import fcntl

    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)
    except OSError:
        pass


# ------------------------------------------------------------------------------------------
# bulk sender (a separate process): N connections, each a real ClientHello then sendfile()


def client_hello(ctx: ssl.SSLContext, name: str) -> bytes:
    """The ClientHello OpenSSL sends for SNI name (what a real client's first flight is)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def blast_main(port: int, conns: int, certdir: Path) -> None:
    ctx = client_ctx(certdir)
    blob = os.open(certdir / "blob", os.O_RDONLY)
    socks: dict[int, socket.socket] = {}
    offsets: dict[int, int] = {}
    ep = select.epoll()
    for i in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(client_hello(ctx, SINK_SNI))
        s.setblocking(False)
        socks[s.fileno()] = s
        offsets[s.fileno()] = (i * 65536) % BLOB
        ep.register(s.fileno(), select.EPOLLOUT)
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        for fd, ev in ep.poll():
            if ev & (select.EPOLLERR | select.EPOLLHUP):
                raise SystemExit(f"bulk connection {fd} failed (event {ev:#x})")
            off = offsets[fd]
            while True:
                try:
                    n = os.sendfile(fd, blob, off, BLOB - off)
                except BlockingIOError:
                    break
                off = (off + n) % BLOB
            offsets[fd] = off


# ------------------------------------------------------------------------------------------
# TLS clients: RTT (in this process) and new connections/s (CONN_PROCS processes)


def client_ctx(certdir: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certdir / "ca.pem")
    return ctx


def connect(addr: tuple[str, int], ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(addr, timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=SNI)


def rtt(addr: tuple[str, int], ctx: ssl.SSLContext, n: int) -> list[float]:
    s = connect(addr, ctx)
    msg = b"m" * 64
    out = []
    for _ in range(50):  # warm up
        s.sendall(msg)
        got = 0
        while got < 64:
            got += len(s.recv(64 - got))
    for _ in range(n):
        t0 = time.perf_counter()
        s.sendall(msg)
        got = 0
        while got < 64:
            got += len(s.recv(64 - got))
        out.append(time.perf_counter() - t0)
    s.close()
    return out


def conns_main(port: int, certdir: Path, seconds: float) -> None:
    """Sequential full TLS connections for seconds from the start; prints ok/failed as JSON."""
    ctx = client_ctx(certdir)
    ok = failed = 0
    first = ""
    end = wait_start() + seconds
    while time.monotonic() < end:
        try:
            s = connect(("127.0.0.1", port), ctx)
            msg = b"e" * ECHO
            s.sendall(msg)
            got = b""
            while len(got) < ECHO:
                b = s.recv(ECHO - len(got))
                if not b:
                    raise ConnectionError("closed before the echo")
                got += b
            if got != msg:
                raise ConnectionError("wrong echo")
            s.close()
            ok += 1
        except (OSError, ssl.SSLError) as e:
            failed += 1
            first = first or f"{type(e).__name__}: {e}"
    print(json.dumps({"ok": ok, "failed": failed, "first_error": first}), flush=True)
