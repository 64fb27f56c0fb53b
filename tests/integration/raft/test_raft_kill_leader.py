"""A real 3-process raft cluster on loopback with TLS (bench/raft/raft_node.py, raft over RPC
type 3 + inner type 1, verify_incoming/outgoing/server_hostname on): concurrent writes and
linearizable reads while the leader is killed with SIGKILL again and again (and restarted from
its data directory); the recorded history must be linearizable and no acknowledged write lost.

``WANFED_RAFT_KILL_SECONDS`` sets the shortest chaos phase (default 12 s); it goes on until it has
killed the leader 3 times and 50 writes were acknowledged (at most 5x that, 90 s at least).
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from netutil import free_port
from twisted.internet import defer, task

from wanfedtx.raft.linearizability import Op, check_history
from wanfedtx.testing.pki import PKI

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench" / "raft"))
from raft_client import ClientConn, ClientError, connect  # noqa: E402

pytestmark = pytest.mark.integration
CHAOS = float(os.environ.get("WANFED_RAFT_KILL_SECONDS", "12"))
MIN_KILLS = 3
MIN_ACKED = 50



class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.pki = PKI()
        for i in range(3):
            self.pki.settings("dc1", f"n{i}", tmp / f"tls{i}")  # writes CA, cert and key files
        # raft_node.py processes are told each other's raft and client addresses on their
        # command lines before any of them listens, so these ports are chosen first (netutil).
        ports: list[int] = []
        while len(ports) < 6:
            if (p := free_port()) not in ports:
                ports.append(p)
        self.rafts = [f"127.0.0.1:{p}" for p in ports[:3]]
        self.clients = [f"127.0.0.1:{p}" for p in ports[3:]]
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes] | None] = [None, None, None]
        self.kills = 0

    def start(self, i: int) -> None:
        peers = [f"--peer={self.rafts[j]}={self.clients[j]}=n{j}" for j in range(3) if j != i]
        log = open(self.tmp / f"n{i}.log", "ab")
        self.procs[i] = subprocess.Popen(
            [sys.executable, str(ROOT / "bench/raft/raft_node.py"), "--raft", self.rafts[i],
             "--client", self.clients[i], "--data-dir", str(self.tmp / f"n{i}"),
             "--election-timeout", "0.5", "--snapshot-threshold", "300", "--log",
             "--tls-dir", str(self.tmp / f"tls{i}"), "--node-name", f"n{i}", *peers],
            stdout=log, stderr=log)
        log.close()

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None:
            p.send_signal(signal.SIGKILL)
            p.wait()
            self.procs[i] = None
            self.kills += 1

    def stop_all(self) -> None:
        for i in range(3):
            self.kill(i)


class Clients:
    """Workers that follow leader hints; every operation lands in ``history``."""

    def __init__(self, reactor: Any, cluster: Cluster) -> None:
        self.reactor = reactor
        self.cluster = cluster
        self.history: list[Op] = []
        self.acked_puts = 0
        self.reads = 0
        self.conns: dict[str, ClientConn] = {}

    async def conn(self, addr: str) -> ClientConn:
        c = self.conns.get(addr)
        if c is None or c.closed:
            c = self.conns[addr] = await connect(self.reactor, addr)
        return c

    async def call(self, addr: str, *req: Any) -> Any:
        c = await self.conn(addr)
        d = c.call(*req)
        d.addTimeout(2.0, self.reactor)
        return await d

    async def worker(self, wid: int, done: Callable[[], bool]) -> None:
        rng = random.Random(wid)
        target = rng.choice(self.cluster.clients)
        n = 0
        while not done():
            key = f"k{rng.randrange(4)}"
            put = rng.random() < 0.6
            n += 1
            value = f"w{wid}-{n}"
            t0 = self.reactor.seconds()
            try:
                if put:
                    await self.call(target, "put", key, value)
                    self.history.append(Op(key, "put", value, t0, self.reactor.seconds()))
                    self.acked_puts += 1
                else:
                    got = await self.call(target, "get", key)
                    self.history.append(Op(key, "get", got, t0, self.reactor.seconds()))
                    self.reads += 1
            except ClientError as e:
                if put and not str(e).startswith("NotLeaderError"):
                    self.history.append(Op(key, "put", value, t0, math.inf))  # unknown outcome
                target = e.leader or rng.choice(self.cluster.clients)
                await task.deferLater(self.reactor, 0.02, lambda: None)
            except Exception:
                if put:
                    self.history.append(Op(key, "put", value, t0, math.inf))
                target = rng.choice(self.cluster.clients)
                await task.deferLater(self.reactor, 0.05, lambda: None)

    async def leader_index(self) -> int | None:
        for i, addr in enumerate(self.cluster.clients):
            if self.cluster.procs[i] is None:
                continue
            try:
                await self.call(addr, "get", "probe")
                return i
            except Exception:
                continue
        return None


@pytest_twisted.ensureDeferred
async def test_sigkill_leader_under_load_is_linearizable(reactor: Any, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    clients = Clients(reactor, cluster)
    for i in range(3):
        cluster.start(i)
    try:
        deadline = reactor.seconds() + 20
        while await clients.leader_index() is None:
            assert reactor.seconds() < deadline, "no leader elected"
            await task.deferLater(reactor, 0.2, lambda: None)
        # The chaos phase lasts at least CHAOS seconds and until it has done what the test
        # asserts (3 leader kills, 50 acknowledged writes), within a generous deadline: a busy
        # machine makes it longer, never a failure.
        min_stop = reactor.seconds() + CHAOS
        hard_stop = reactor.seconds() + max(CHAOS * 5, 90)

        def done() -> bool:
            now = reactor.seconds()
            enough = cluster.kills >= MIN_KILLS and clients.acked_puts > MIN_ACKED
            return now >= hard_stop or (now >= min_stop and enough)

        workers = [defer.ensureDeferred(clients.worker(w, done)) for w in range(8)]

        async def killer() -> None:
            while not done():
                await task.deferLater(reactor, 1.5, lambda: None)
                ld = await clients.leader_index()
                if ld is not None:
                    cluster.kill(ld)
                    await task.deferLater(reactor, 0.7, lambda: None)
                    cluster.start(ld)

        await defer.gatherResults([*workers, defer.ensureDeferred(killer())])
        # quiesce: everything up, then a final linearizable read of every key
        for i in range(3):
            if cluster.procs[i] is None:
                cluster.start(i)
        final_deadline = reactor.seconds() + 20
        for k in range(4):
            while True:
                ld = await clients.leader_index()
                if ld is not None:
                    t0 = reactor.seconds()
                    try:
                        got = await clients.call(cluster.clients[ld], "get", f"k{k}")
                    except Exception:
                        got = "retry"
                    if got != "retry":
                        clients.history.append(Op(f"k{k}", "get", got, t0, reactor.seconds()))
                        break
                assert reactor.seconds() < final_deadline, "cluster did not recover"
                await task.deferLater(reactor, 0.2, lambda: None)
    finally:
        for c in clients.conns.values():
            if c.transport is not None:
                c.transport.loseConnection()
        cluster.stop_all()
    print(f"raft kill test: {cluster.kills} leader kills, {clients.acked_puts} acked writes, "
          f"{clients.reads} reads, {len(clients.history)} ops in history")
    assert cluster.kills >= MIN_KILLS
    assert clients.acked_puts > MIN_ACKED
    result = check_history(clients.history)
    assert result.ok, result.detail
