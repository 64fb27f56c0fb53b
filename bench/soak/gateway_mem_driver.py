"""The load side of ``gateway_mem.py``: backends, a fake agent HTTP API and connection churn.

Run by ``gateway_mem.py`` as a child process (so its sockets and allocations are not the
gateway's), with the gateway's relay and admin ports. It prints its fake agent's port, then runs
one churn round per ``go`` line on stdin and answers ``done <n>``.

The fake agent answers the watches of ``wanfed gateway -proxy-id mesh-gateway`` (registration,
agent self, CA roots, local servers, federation states, datacenters, service dump of dc2);
blocking queries are held ``--hold`` seconds, every third answer carries a new index, and a
share of the answers are HTTP 500 or a dropped connection (an agent that was killed). dc2's
second gateway (a refused port) turns critical and back with the index, so the gateway rebuilds
its snapshot and swaps route tables.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import StreamRequestHandler, ThreadingTCPServer
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
from run import client_hello as first_flight  # type: ignore[import-not-found]

TRUST = "11111111-2222-3333-4444-555555555555.consul"


def client_hello(sni: str | None, alpn: list[str] | None = None) -> bytes:
    """The first flight of a stdlib TLS client (OpenSSL) with this SNI."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    hello: bytes = first_flight(ctx, sni)  # (bench/gateway/run.py; None: no SNI)
    return hello


class Echo(StreamRequestHandler):
    def handle(self) -> None:
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(data)
        except OSError:
            return


class Resetter(StreamRequestHandler):
    """Reads a little, then resets the connection (a backend that dies mid-request)."""

    def handle(self) -> None:
        try:
            self.request.recv(65536)
        except OSError:
            return
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Server(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class Agent:
    """State of the fake agent; the handler reads it."""

    def __init__(self, servers: list[tuple[str, int]], gw2: list[tuple[str, int]], hold: float,
                 fail: float, gw_port: int) -> None:
        self.servers = servers
        self.gw2 = gw2
        self.hold = hold
        self.fail = fail
        self.gw_port = gw_port
        self.index = 10
        self.lock = threading.Lock()
        self.rng = random.Random(7)

    def next_index(self) -> int:
        with self.lock:
            if self.rng.random() < 1 / 3:
                self.index += 1
            return self.index

    def csn(self, dc: str, node: str, addr: tuple[str, int], svc: str, kind: str = "",
            status: str = "passing") -> dict[str, Any]:
        return {
            "Node": {"Node": node, "Datacenter": dc, "Address": addr[0], "TaggedAddresses": {}},
            "Service": {"Service": svc, "ID": svc, "Kind": kind, "Address": addr[0],
                        "Port": addr[1], "ModifyIndex": self.index, "TaggedAddresses": {}},
            "Checks": [{"Status": status}],
        }

    def answer(self, path: str) -> Any:
        idx = self.index
        flip = "warning" if idx % 2 else "passing"
        if path.startswith("/v1/agent/self"):
            return {"Config": {"Datacenter": "dc1"},
                    "DebugConfig": {"DNSDomain": "consul.", "Padding": "x" * 20000}}
        if path.startswith("/v1/agent/service/"):
            return {"Kind": "mesh-gateway", "ID": "mesh-gateway", "Service": "mesh-gateway",
                    "Address": "127.0.0.1", "Port": self.gw_port,
                    "Meta": {"consul-wan-federation": "1"}, "TaggedAddresses": {}}
        if path.startswith("/v1/agent/connect/ca/roots"):
            return {"TrustDomain": TRUST, "Roots": []}
        if path.startswith("/v1/health/service/consul"):
            return [self.csn("dc1", f"s{i + 1}", a, "consul", status=flip)
                    for i, a in enumerate(self.servers)]
        if path.startswith("/v1/internal/federation-states/mesh-gateways"):
            # the second gateway of dc2 turns critical and back: the snapshot is rebuilt
            return {"dc2": [self.csn("dc2", f"g{i}", a, "mesh-gateway", "mesh-gateway",
                                     "critical" if i and idx % 2 else "passing")
                            for i, a in enumerate(self.gw2)]}
        if path.startswith("/v1/catalog/datacenters"):
            return ["dc1", "dc2"]
        if path.startswith("/v1/internal/service-dump"):
            return [self.csn("dc2", f"g{i}", a, "mesh-gateway", "mesh-gateway",
                             "critical" if i and idx % 2 else "passing")
                    for i, a in enumerate(self.gw2)]
        return None


def agent_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            if "index=" in self.path:
                time.sleep(agent.hold * (0.5 + agent.rng.random()))
            r = agent.rng.random()
            if r < agent.fail / 2:
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
                return
            idx = agent.next_index() if "index=" in self.path else agent.index
            body = agent.answer(self.path)
            code = 200 if body is not None else 404
            if r < agent.fail:
                code, data = 500, b"rpc error: No cluster leader"
            else:
                data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Consul-Index", str(idx))
            self.end_headers()
            self.wfile.write(data)

    return H


def serve(server: Any) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


class Churn:
    def __init__(self, gw: tuple[str, int], admin: tuple[str, int], seed: int,
                 scrapes: int = 4) -> None:
        self.scrapes = scrapes  # rounds of admin scrapes (5 paths each) per churn round
        self.gw = gw
        self.admin = admin
        self.rng = random.Random(seed)
        self.hellos = {
            "local": client_hello("s1.server.dc1.consul", ["consul/rpc-multi"]),
            "local2": client_hello("s2.server.dc1.consul", ["consul/rpc-multi"]),
            "any_server": client_hello("server.dc1.consul", ["consul/rpc-multi"]),
            "remote": client_hello("s7.server.dc2.consul", ["consul/rpc-multi"]),
            "remote_dc": client_hello("x.dc2.internal." + TRUST),
            "dead": client_hello("s3.server.dc1.consul"),  # endpoint that refuses
            "resetter": client_hello("s4.server.dc1.consul"),  # backend that resets
        }
        self.long: list[socket.socket] = []

    def _conn(self) -> socket.socket:
        s = socket.create_connection(self.gw, timeout=5)
        return s

    def one(self, kind: str, i: int) -> None:
        try:
            s = self._conn()
        except OSError:
            return
        try:
            if kind == "roundtrip":
                key = self.rng.choice(["local", "local2", "any_server", "remote", "remote_dc"])
                s.sendall(self.hellos[key] + b"payload-%d" % i)
                want = len(self.hellos[key]) + len(b"payload-%d" % i)
                got = 0
                while got < want:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += len(d)
                if i % 2:
                    s.shutdown(socket.SHUT_WR)
                    s.recv(10)
            elif kind == "early_close":
                s.sendall(self.hellos["local"])
            elif kind == "reset":
                s.sendall(self.hellos["remote"] + b"x" * 1000)
                s.recv(10)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif kind == "no_hello":
                pass  # the agent's TCP check: connect and close
            elif kind == "partial_hello":
                s.sendall(self.hellos["local"][:20])
                s.settimeout(3)
                s.recv(10)  # the gateway's hello timeout closes it
            elif kind == "unknown_sni":
                s.sendall(client_hello(f"h{self.rng.randrange(1 << 30)}.example.com"))
                s.recv(10)
            elif kind == "garbage":
                s.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(self.rng.randrange(256)
                                                            for _ in range(50)))
                s.recv(10)
            elif kind == "dead":
                s.sendall(self.hellos["dead"])
                s.recv(10)
            elif kind == "resetter":
                s.sendall(self.hellos["resetter"] + b"req")
                s.recv(10)
        except OSError:
            pass
        finally:
            s.close()

    def long_lived(self) -> None:
        """Pooled RPC connections: a few kept across rounds, some replaced each round."""
        for s in list(self.long):
            try:
                s.sendall(b"ping")
                s.recv(10)
            except OSError:
                self.long.remove(s)
                s.close()
        while len(self.long) > 20 and self.rng.random() < 0.9:
            s = self.long.pop(self.rng.randrange(len(self.long)))
            s.close()
        while len(self.long) < 30:
            try:
                s = self._conn()
                s.sendall(self.hellos[self.rng.choice(["local", "remote"])])
                s.recv(65536)
                self.long.append(s)
            except OSError:
                break

    def scrape(self) -> None:
        for path in ("/stats/prometheus", "/stats", "/clusters?format=json", "/ready",
                     "/config_dump"):
            try:
                with urllib.request.urlopen(f"http://{self.admin[0]}:{self.admin[1]}{path}",
                                            timeout=5) as r:
                    r.read()
            except OSError:
                pass

    def round(self, n: int, threads: int) -> int:
        kinds = (["roundtrip"] * 50 + ["early_close"] * 8 + ["reset"] * 8 + ["no_hello"] * 12
                 + ["unknown_sni"] * 6 + ["garbage"] * 4 + ["dead"] * 4 + ["resetter"] * 4
                 + ["partial_hello"] * 1)
        plan = [self.rng.choice(kinds) for _ in range(n)]
        lock = threading.Lock()
        pos = [0]

        def work() -> None:
            while True:
                with lock:
                    i = pos[0]
                    pos[0] += 1
                if i >= len(plan):
                    return
                self.one(plan[i], i)

        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for _ in range(self.scrapes):
            self.scrape()
        self.long_lived()
        for t in ts:
            t.join()
        return n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-round", type=int, default=2000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--hold", type=float, default=0.5)
    p.add_argument("--fail", type=float, default=0.05)
    p.add_argument("--scrapes", type=int, default=4, help="admin scrapes per round")
    p.add_argument("--gateway", type=int, required=True, help="the gateway's relay port")
    p.add_argument("--admin", type=int, required=True, help="the gateway's admin port")
    p.add_argument("--agent", type=int, default=0, help="the fake agent's port")
    args = p.parse_args()
    echo1 = Server(("127.0.0.1", 0), Echo)
    echo2 = Server(("127.0.0.1", 0), Echo)
    rst = Server(("127.0.0.1", 0), Resetter)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    for s in (echo1, echo2, rst):
        serve(s)
    def hp(a: Any) -> tuple[str, int]:
        return (str(a[0]), int(a[1]))

    servers = [hp(echo1.server_address), hp(echo2.server_address), hp(dead.getsockname()),
               hp(rst.server_address)]
    agent = Agent(servers, [servers[1], servers[2]], args.hold, args.fail, args.gateway)
    httpd = ThreadingHTTPServer(("127.0.0.1", args.agent), agent_handler(agent))
    httpd.daemon_threads = True
    serve(httpd)
    print(f"agent {httpd.server_address[1]}", flush=True)
    gw, admin = ("127.0.0.1", args.gateway), ("127.0.0.1", args.admin)
    churn = Churn(gw, admin, 1, args.scrapes)
    for line_ in sys.stdin:
        if line_.strip() != "go":
            break
        n = churn.round(args.per_round, args.threads)
        print(f"done {n}", flush=True)


if __name__ == "__main__":
    main()
