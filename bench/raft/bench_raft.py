"""Durable replicated writes/s and commit latency (p50/p99) of a 3-server wanfedtx raft cluster on
loopback, side by side with etcd 3.4 (3 members, its default fsync), at several concurrencies.

    .venv/bin/python bench/raft/bench_raft.py [--duration 10] [--concurrency 1,16,256]

Both clusters get the same workload from this process (Twisted, one connection per proposer
group): writes of 64-byte values to random keys, each proposer issuing its next write when the
previous one is acknowledged (acknowledged = committed on a majority and fsynced). Our client
talks msgpack frames to raft_node.py; etcd's client speaks minimal HTTP/1.1 keep-alive to its
JSON gateway (/v3/kv/put, one connection per proposer), so etcd pays gateway JSON+base64 costs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from raft_client import ClientConn, ClientError, connect
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def start_ours(base: int, tmp: str) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    rafts = [f"127.0.0.1:{base + i}" for i in range(3)]
    clients = [f"127.0.0.1:{base + 100 + i}" for i in range(3)]
    procs = []
    for i in range(3):
        peers = [f"--peer={rafts[j]}={clients[j]}" for j in range(3) if j != i]
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    os.path.join(HERE, "raft_node.py"),
                    "--raft",
                    rafts[i],
                    "--client",
                    clients[i],
                    "--data-dir",
                    os.path.join(tmp, f"n{i}"),
                    *peers,
                ],
                cwd=ROOT,
            )
        )
    return procs, clients


def start_etcd(base: int, tmp: str) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    peers = [f"http://127.0.0.1:{base + i}" for i in range(3)]
    clients = [f"http://127.0.0.1:{base + 100 + i}" for i in range(3)]
    cluster = ",".join(f"e{i}={peers[i]}" for i in range(3))
    procs = []
    for i in range(3):
        procs.append(
            subprocess.Popen(
                [
                    "etcd",
                    "--name",
                    f"e{i}",
                    "--data-dir",
                    os.path.join(tmp, f"e{i}"),
                    "--listen-peer-urls",
                    peers[i],
                    "--initial-advertise-peer-urls",
                    peers[i],
                    "--listen-client-urls",
                    clients[i],
                    "--advertise-client-urls",
                    clients[i],
                    "--initial-cluster",
                    cluster,
                    "--initial-cluster-state",
                    "new",
                    "--log-level",
                    "error",
                    "--logger",
                    "zap",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs, clients


async def ours_leader(reactor: Any, clients: list[str]) -> ClientConn:
    deadline = time.time() + 30
    while time.time() < deadline:
        for c in clients:
            try:
                conn = await connect(reactor, c)
                await conn.call("put", "probe", b"x")
                return conn
            except (ClientError, ConnectionError, OSError, Exception):
                pass
        await task.deferLater(reactor, 0.2, lambda: None)
    raise RuntimeError("our cluster elected no leader in 30 s")


async def run_ours(
    reactor: Any, clients: list[str], conc: int, duration: float
) -> tuple[int, list[float]]:
    conns = [await ours_leader(reactor, clients) for _ in range(min(conc, 8))]
    lat: list[float] = []
    stop = time.perf_counter() + duration
    value = b"v" * 64

    async def worker(k: int) -> None:
        conn = conns[k % len(conns)]
        rng = random.Random(k)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await conn.call("put", f"key{rng.randrange(10000)}", value)
            lat.append(time.perf_counter() - t0)

    await defer.gatherResults([defer.ensureDeferred(worker(k)) for k in range(conc)])
    for c in conns:
        c.transport.loseConnection()  # type: ignore[union-attr]
    return len(lat), lat


class EtcdConn(Protocol):
    """Minimal HTTP/1.1 keep-alive client for etcd's JSON gateway (one request in flight)."""

    def __init__(self, host: str) -> None:
        self.host = host.encode()
        self.buf = b""
        self.waiting: defer.Deferred[tuple[int, bytes]] | None = None

    def post(self, path: str, body: bytes) -> defer.Deferred[tuple[int, bytes]]:
        self.waiting = defer.Deferred()
        assert self.transport is not None
        self.transport.write(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\nHost: "
            + self.host
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        return self.waiting

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buf[:head_end].decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            k, _, v = line.partition(":")
            if k.lower() == "content-length":
                length = int(v)
        if len(self.buf) < head_end + 4 + length:
            return
        body = self.buf[head_end + 4 : head_end + 4 + length]
        self.buf = self.buf[head_end + 4 + length :]
        d, self.waiting = self.waiting, None
        if d is not None:
            d.callback((int(head[0].split()[1]), body))


async def etcd_conn(reactor: Any, url: str) -> EtcdConn:
    hostport = url.split("//", 1)[1]
    host, port = hostport.rsplit(":", 1)
    conn: EtcdConn = await connectProtocol(
        TCP4ClientEndpoint(reactor, host, int(port)), EtcdConn(hostport)
    )
    return conn


async def run_etcd(
    reactor: Any, clients: list[str], conc: int, duration: float
) -> tuple[int, list[float]]:
    leader = None
    deadline = time.time() + 30
    while leader is None and time.time() < deadline:
        for c in clients:
            try:
                conn = await etcd_conn(reactor, c)
                _code, body = await conn.post("/v3/maintenance/status", b"{}")
                conn.transport.loseConnection()  # type: ignore[union-attr]
                st = json.loads(body)
                if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                    leader = c
            except Exception:
                pass
        if leader is None:
            await task.deferLater(reactor, 0.2, lambda: None)
    if leader is None:
        raise RuntimeError("etcd elected no leader")
    lat: list[float] = []
    stop = time.perf_counter() + duration
    value = base64.b64encode(b"v" * 64).decode()
    conns = [await etcd_conn(reactor, leader) for _ in range(conc)]

    async def worker(k: int) -> None:
        rng = random.Random(k)
        conn = conns[k]
        while time.perf_counter() < stop:
            key = base64.b64encode(f"key{rng.randrange(10000)}".encode()).decode()
            body = json.dumps({"key": key, "value": value}).encode()
            t0 = time.perf_counter()
            code, _ = await conn.post("/v3/kv/put", body)
            if code != 200:
                raise RuntimeError(f"etcd put failed: {code}")
            lat.append(time.perf_counter() - t0)

    await defer.gatherResults([defer.ensureDeferred(worker(k)) for k in range(conc)])
    for c in conns:
        c.transport.loseConnection()  # type: ignore[union-attr]
    return len(lat), lat


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


async def main(reactor: Any, args: argparse.Namespace) -> None:
    concs = [int(x) for x in args.concurrency.split(",")]
    rows = []
    for system in args.systems.split(","):
        for conc in concs:
            tmp = tempfile.mkdtemp(prefix=f"bench-raft-{system}-", dir=args.tmp)
            base = 17000 + random.randrange(0, 200) * 10
            if system == "wanfedtx":
                procs, clients = start_ours(base, tmp)
                runner = run_ours
            else:
                procs, clients = start_etcd(base, tmp)
                runner = run_etcd
            try:
                await task.deferLater(reactor, 1.0, lambda: None)
                await runner(reactor, clients, conc, 1.0)  # warm-up
                n, lat = await runner(reactor, clients, conc, args.duration)
            finally:
                stop_all(procs)
                shutil.rmtree(tmp, ignore_errors=True)
            row = (system, conc, n / args.duration, pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3)
            rows.append(row)
            print(
                f"{row[0]:9s} conc={row[1]:4d} writes/s={row[2]:9.0f} "
                f"p50={row[3]:7.2f}ms p99={row[4]:7.2f}ms",
                flush=True,
            )
    print("\n| system | proposers | writes/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.2f} | {r[4]:.2f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--concurrency", default="1,16,256")
    ap.add_argument("--systems", default="wanfedtx,etcd")
    ap.add_argument("--tmp", default=None, help="directory for data dirs (default: $TMPDIR)")
    task.react(lambda r: defer.ensureDeferred(main(r, ap.parse_args())))
