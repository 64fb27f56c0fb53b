"""Raw-socket HTTP/1.1 load clients for bench/http/kv_bench.py, run as their own processes.

No Twisted here: non-blocking sockets on one ``selectors`` loop (epoll on Linux), keep-alive
connections, one request in flight per connection, responses parsed from the status line,
``Content-Length`` or ``Transfer-Encoding: chunked`` (the agent sends chunked bodies). Each role
is a child process started by the harness; it takes one JSON argument, talks to the harness
through lines on stdin/stdout (the harness says ``go``/``put``; results come back as one JSON
line), and never shares an interpreter with the server it measures.

Roles:

``load``  ``concurrency`` connections spread round-robin over ``targets``; request numbers
          ``offset, offset + step, ...`` below ``requests`` (so several client processes share one
          run), key ``<prefix><i % keys>``; PUT sends a ``value_size``-byte body. Connects, prints
          ``ready``, waits for ``go`` on stdin, runs, prints per-request latencies (µs) and its
          start/end on the system-wide monotonic clock.
``watch`` ``watchers`` connections to one target, opened in batches of ``batch`` (each batch
          connected and its request sent before the next starts; with ``paced`` the process
          also prints ``batch`` and waits for ``next``, which the harness sends once the server
          has accepted them all, so the listen queue never overflows), each sending
          ``GET <path>?index=<index>&wait=<wait>``. Prints ``sent``, then
          waits for ``put`` on stdin, sends one PUT on its own keep-alive socket (t0 just before
          the send) and waits until every watcher has its complete response; prints every
          watcher's wake-up time relative to t0 and checks status, body and ``X-Consul-Index``;
          closes the connections after one more line on stdin.

Usage (by the harness): python bench/http/rawclient.py load|watch '<json>'
"""

from __future__ import annotations

import base64
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE


class ProtocolError(Exception):
    """The server sent something that is not an HTTP/1.1 response this client understands."""


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class ResponseParser:
    """Incremental parser of a stream of HTTP/1.1 responses (one connection)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[Response]:
        self.buf += data
        out: list[Response] = []
        while True:
            r = self._one()
            if r is None:
                return out
            out.append(r)

    def _one(self) -> Response | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(buf[:end]).split(b"\r\n")
        status_line = lines[0]
        if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
            raise ProtocolError(f"bad status line {status_line[:80]!r}")
        status = int(status_line[9:12])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            if len(buf) < start + n:
                return None
            body = bytes(buf[start : start + n])
            del buf[: start + n]
            return Response(status, headers, body)
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts: list[bytes] = []
            pos = start
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    # trailers (none expected) end with an empty line
                    while True:
                        eol = buf.find(b"\r\n", pos)
                        if eol < 0:
                            return None
                        empty = eol == pos
                        pos = eol + 2
                        if empty:
                            del buf[:pos]
                            return Response(status, headers, b"".join(parts))
                if len(buf) < pos + size + 2:
                    return None
                parts.append(bytes(buf[pos : pos + size]))
                pos += size + 2
        if status in (204, 304) or 100 <= status < 200:
            del buf[:start]
            return Response(status, headers, b"")
        raise ProtocolError(f"response {status} has neither Content-Length nor chunked body")


def raise_nofile(need: int) -> int:
    """Raise the soft open-files limit towards ``need`` (hard limit permitting); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def blocking_connect(host: str, port: int) -> socket.socket:
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    return s


# -- load ---------------------------------------------------------------------------------------


class LoadConn:
    __slots__ = ("host", "out", "parser", "sent_at", "sock")

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.host = host
        self.parser = ResponseParser()
        self.out = b""
        self.sent_at = 0.0


def run_load(cfg: dict[str, Any]) -> int:
    targets: list[tuple[str, int]] = [(h, int(p)) for h, p in cfg["targets"]]
    method: str = cfg["method"]
    query: str = cfg.get("query", "")
    prefix: str = cfg["prefix"]
    keys: int = cfg["keys"]
    value = b"v" * int(cfg.get("value_size", 64))
    indices: Iterator[int] = iter(range(cfg["offset"], cfg["requests"], cfg["step"]))
    raise_nofile(cfg["concurrency"] + 64)

    sel = selectors.DefaultSelector()
    conns: list[LoadConn] = []
    for c in range(cfg["concurrency"]):
        host, port = targets[c % len(targets)]
        conn = LoadConn(blocking_connect(host, port), f"{host}:{port}")
        conns.append(conn)

    def request(conn: LoadConn, i: int) -> bytes:
        path = f"/v1/kv/{prefix}{i % keys}{query}"
        if method == "PUT":
            return (
                f"PUT {path} HTTP/1.1\r\nHost: {conn.host}\r\n"
                f"Content-Length: {len(value)}\r\n\r\n"
            ).encode() + value
        return f"GET {path} HTTP/1.1\r\nHost: {conn.host}\r\n\r\n".encode()

    latencies: list[int] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    active = 0

    def issue(conn: LoadConn) -> bool:
        i = next(indices, None)
        if i is None:
            return False
        data = request(conn, i)
        conn.sent_at = time.monotonic()
        n = conn.sock.send(data)
        conn.out = data[n:]
        sel.modify(conn.sock, EVENT_READ | (EVENT_WRITE if conn.out else 0), conn)
        return True

    for conn in conns:
        sel.register(conn.sock, EVENT_READ, conn)
    emit({"event": "ready"})
    if sys.stdin.readline().strip() != "go":
        return 2
    start = time.monotonic()
    for conn in conns:
        if issue(conn):
            active += 1
        else:
            sel.unregister(conn.sock)
    deadline = start + float(cfg.get("timeout", 600))
    while active:
        if time.monotonic() > deadline:
            errors.append(f"timed out with {active} requests in flight")
            break
        for key, ev in sel.select(1.0):
            conn = key.data
            if ev & EVENT_WRITE and conn.out:
                n = conn.sock.send(conn.out)
                conn.out = conn.out[n:]
                if not conn.out:
                    sel.modify(conn.sock, EVENT_READ, conn)
            if not ev & EVENT_READ:
                continue
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                data, err = b"", str(e)
            else:
                err = "connection closed by the server"
            if not data:
                errors.append(f"{conn.host}: {err}")
                sel.unregister(conn.sock)
                active -= 1
                continue
            for resp in conn.parser.feed(data):
                now = time.monotonic()
                latencies.append(int((now - conn.sent_at) * 1e6))
                code = str(resp.status)
                statuses[code] = statuses.get(code, 0) + 1
                if resp.status != 200 and len(errors) < 5:
                    errors.append(f"{conn.host}: HTTP {resp.status}: {resp.body[:200]!r}")
                if not issue(conn):
                    sel.unregister(conn.sock)
                    active -= 1
    end = time.monotonic()
    cpu = os.times()
    for conn in conns:
        conn.sock.close()
    emit(
        {
            "event": "done",
            "start": start,
            "end": end,
            "latencies_us": latencies,
            "statuses": statuses,
            "errors": errors,
            "cpu_s": cpu.user + cpu.system,
        }
    )
    return 0


# -- watch --------------------------------------------------------------------------------------


class Watcher:
    __slots__ = ("done_at", "early", "out", "parser", "resp", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = ResponseParser()
        self.out = b""
        self.resp: Response | None = None
        self.done_at = 0.0
        self.early = False


def run_watch(cfg: dict[str, Any]) -> int:
    host: str = cfg["host"]
    port: int = int(cfg["port"])
    n: int = cfg["watchers"]
    index: int = cfg["index"]
    batch: int = cfg.get("batch", 50)
    paced: bool = cfg.get("paced", False)
    path = f"{cfg['path']}?index={index}&wait={cfg.get('wait', '300s')}"
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    limit = raise_nofile(n + 64)
    if limit < n + 16:
        emit({"event": "error", "error": f"open-files limit {limit} is too low for {n} watchers"})
        return 1

    sel = selectors.DefaultSelector()
    # The writer's socket is connected first, so the PUT needs no handshake at t0.
    put_sock = blocking_connect(host, port)
    watchers: list[Watcher] = []
    errors: list[str] = []
    connect_started = time.monotonic()
    slowest_batch = 0.0
    for first in range(0, n, batch):
        t_batch = time.monotonic()
        pending: set[Watcher] = set()
        for _ in range(first, min(n, first + batch)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                errors.append(f"connect: {os.strerror(rc)}")
                s.close()
                continue
            w = Watcher(s)
            w.out = request
            watchers.append(w)
            pending.add(w)
            sel.register(s, EVENT_WRITE, w)
        deadline = time.monotonic() + 60
        while pending:
            if time.monotonic() > deadline:
                emit({"event": "error", "error": f"{len(pending)} connections never completed"})
                return 1
            for key, ev in sel.select(1.0):
                w = key.data
                if ev & EVENT_WRITE:
                    if w in pending and w.out is request:
                        err = w.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            emit({"event": "error", "error": f"connect: {os.strerror(err)}"})
                            return 1
                    n_sent = w.sock.send(w.out)
                    w.out = w.out[n_sent:]
                    if not w.out:
                        pending.discard(w)
                        sel.modify(w.sock, EVENT_READ, w)
                if ev & EVENT_READ:
                    read_watcher(sel, w, errors, early=True)
        slowest_batch = max(slowest_batch, time.monotonic() - t_batch)
        if paced and len(watchers) < n:
            # The harness answers once the server has accepted every connection so far, so the
            # next batch never meets a full listen queue (which drops SYNs: 1 s retransmits).
            emit({"event": "batch", "sent": len(watchers)})
            if sys.stdin.readline().strip() != "next":
                return 2
    emit(
        {
            "event": "sent",
            "watchers": len(watchers),
            "seconds": time.monotonic() - connect_started,
            "slowest_batch_s": slowest_batch,
            "errors": errors,
        }
    )

    # Park: notice any early answer while waiting for the harness to say "put".
    stdin_key = object()
    sel.register(sys.stdin.fileno(), EVENT_READ, stdin_key)
    command = ""
    while not command:
        for key, _ev in sel.select(None):
            if key.data is stdin_key:
                command = sys.stdin.readline().strip() or "eof"
            else:
                read_watcher(sel, key.data, errors, early=True)
    sel.unregister(sys.stdin.fileno())
    if command != "put":
        return 2

    put_parser = ResponseParser()
    put_value = cfg["put_value"].encode()
    put_req = (
        f"PUT {cfg['path']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Length: {len(put_value)}\r\n\r\n"
    ).encode() + put_value
    put_resp: list[Response] = []
    sel.register(put_sock, EVENT_READ, put_parser)
    remaining = sum(1 for w in watchers if w.resp is None)
    cpu0 = os.times()
    t0 = time.monotonic()
    put_sock.sendall(put_req)
    put_done = 0.0
    deadline = t0 + float(cfg.get("wake_timeout", 120))
    while remaining or not put_resp:
        if time.monotonic() > deadline:
            errors.append(f"{remaining} watchers not woken within {cfg.get('wake_timeout', 120)} s")
            break
        for key, _ev in sel.select(1.0):
            if key.data is put_parser:
                data = put_sock.recv(65536)
                if not data:
                    errors.append("the PUT connection was closed without a response")
                    put_resp.append(Response(0, {}, b""))
                    sel.unregister(put_sock)
                    continue
                got = put_parser.feed(data)
                if got:
                    put_done = time.monotonic()
                    put_resp.extend(got)
                    sel.unregister(put_sock)
            elif read_watcher(sel, key.data, errors, early=False):
                remaining -= 1
    cpu1 = os.times()
    put_sock.close()

    # Check every answer only after the clock has stopped.
    expected_value = base64.b64encode(put_value).decode()
    failures: dict[str, int] = {}

    def fail(kind: str) -> None:
        failures[kind] = failures.get(kind, 0) + 1

    wake_ms: list[float] = []
    early = 0
    for w in watchers:
        if w.early:
            early += 1
            fail("answered before the write")
        if w.resp is None:
            fail("no complete response")
            continue
        if w.resp.status != 200:
            fail(f"HTTP {w.resp.status}")
            continue
        try:
            got_index = int(w.resp.headers.get(b"x-consul-index", b"0"))
        except ValueError:
            got_index = 0
        if got_index <= index:
            fail("X-Consul-Index not above the watched index")
        try:
            entries = json.loads(w.resp.body)
            ok = entries[0]["Value"] == expected_value
        except (ValueError, LookupError, TypeError):
            ok = False
        if not ok:
            fail("body without the written value")
        if not w.early:
            wake_ms.append((w.done_at - t0) * 1000)
    emit(
        {
            "event": "woken",
            "watchers": len(watchers),
            "index": index,
            "wake_ms": sorted(wake_ms),
            "failures": failures,
            "errors": errors,
            "early": early,
            "put_status": put_resp[0].status if put_resp else 0,
            "put_ms": (put_done - t0) * 1000 if put_done else None,
            "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        }
    )
    # The connections stay open until the harness has read the server's CPU time, so that
    # figure does not include the server's work for 10,000 closes.
    sys.stdin.readline()
    for w in watchers:
        w.sock.close()
    return 0


def read_watcher(sel: selectors.BaseSelector, w: Watcher, errors: list[str], early: bool) -> bool:
    """Read what ``w`` has; True when its response just became complete."""
    try:
        data = w.sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError as e:
        errors.append(f"watcher: {e}")
        data = b""
    now = time.monotonic()
    if not data:
        sel.unregister(w.sock)
        if w.resp is None:
            errors.append("watcher connection closed without a response")
            w.done_at = now
            w.early = w.early or early
            return True
        return False
    if w.resp is not None:
        return False
    got = w.parser.feed(data)
    if not got:
        return False
    w.resp = got[0]
    w.done_at = now
    w.early = early
    sel.unregister(w.sock)
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("load", "watch"):
        print(__doc__, file=sys.stderr)
        return 2
    cfg = json.loads(argv[2])
    return run_load(cfg) if argv[1] == "load" else run_watch(cfg)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
