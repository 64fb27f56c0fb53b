"""RaftService under a task.Clock with the in-memory transport and real (inline) disk writes."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from wanfedtx.raft.core import RaftOptions
from wanfedtx.raft.errors import NotLeaderError
from wanfedtx.raft.interfaces import IConsensus
from wanfedtx.raft.service import RaftService
from wanfedtx.raft.transport import MemoryNetwork


class KV:
    """A small FSM: set key=value, returns the previous value."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.last_applied = 0
        self.restores = 0

    def apply(self, index: int, data: bytes) -> Any:
        k, v = msgpack.unpackb(data)
        old = self.data.get(k)
        self.data[k] = v
        self.last_applied = index
        return old

    def snapshot(self) -> Iterator[bytes]:
        items = sorted(self.data.items())
        for i in range(0, len(items), 3):
            yield msgpack.packb(items[i:i + 3])

    def restore(self, chunks: Iterable[bytes], last_index: int = 0) -> None:
        self.data = {}
        self.restores += 1
        for c in chunks:
            self.data.update(dict(msgpack.unpackb(c)))
        self.last_applied = last_index


ADDRS = ["10.0.0.1:8300", "10.0.0.2:8300", "10.0.0.3:8300"]


class World:
    def __init__(self, tmp: Path, threshold: int = 1000) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.net = MemoryNetwork(self.clock)
        self.tmp = tmp
        self.threshold = threshold
        self.svcs: dict[str, RaftService] = {}
        self.fsms: dict[str, KV] = {}
        for a in ADDRS:
            self.start(a)

    def start(self, a: str) -> RaftService:
        fsm = self.fsms[a] = KV()
        s = RaftService(node_id=a, data_dir=str(self.tmp / a.replace(":", "_")), fsm=fsm,
                        transport=self.net.transport(a), reactor=self.clock, peers=ADDRS,
                        bootstrap_expect=3, options=RaftOptions(election_timeout=1.0,
                                                                heartbeat_interval=0.1),
                        rng=random.Random(a), snapshot_threshold=self.threshold,
                        threaded_writer=False)
        s.startService()
        self.svcs[a] = s
        return s

    def stop(self, a: str) -> None:
        self.svcs.pop(a).stopService()
        del self.net.transports[a]

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds / 0.01)):
            self.clock.advance(0.01)

    def leader(self) -> RaftService:
        for _ in range(500):
            ls = [s for s in self.svcs.values() if s.is_leader()]
            if ls:
                return ls[0]
            self.run(0.05)
        raise AssertionError("no leader")

    def settle(self, d: Deferred[Any]) -> Any:
        out: list[Any] = []
        d.addBoth(out.append)
        for _ in range(1000):
            if out:
                break
            self.clock.advance(0.01)
        assert out, "deferred never fired"
        if isinstance(out[0], Failure):
            out[0].raiseException()
        return out[0]


def cmd(k: str, v: str) -> bytes:
    out: bytes = msgpack.packb([k, v])
    return out


def test_replicates_applies_and_survives_leader_loss(tmp_path: Path) -> None:
    w = World(tmp_path)
    ld = w.leader()
    assert isinstance(ld, IConsensus)
    seen: list[bool] = []
    ld.add_leadership_observer(seen.append)
    assert seen == [True]
    ds = [ld.apply(cmd(f"k{i % 7}", f"v{i}")) for i in range(50)]
    results = [w.settle(d) for d in ds]
    assert [r[0] for r in results] == sorted(r[0] for r in results)
    assert results[7][1] == "v0"  # previous value of k0
    w.run(0.5)
    assert all(f.data == w.fsms[ld.node_id].data for f in w.fsms.values())
    follower = next(s for s in w.svcs.values() if s is not ld)
    with pytest.raises(NotLeaderError):
        w.settle(follower.apply(cmd("x", "y")))
    assert follower.leader_address() == ld.node_id
    assert follower.peers() == sorted(ADDRS)
    # the leader dies; another takes over and keeps every committed write
    old = ld.node_id
    w.stop(old)
    assert seen == [True, False]
    ld2 = w.leader()
    assert ld2.node_id != old
    w.settle(ld2.apply(cmd("after", "1")))
    # the old leader restarts from its disk and catches up
    w.start(old)
    w.run(1.0)
    assert w.fsms[old].data == w.fsms[ld2.node_id].data
    assert w.fsms[old].data["after"] == "1"


def test_verify_leader_and_transfer(tmp_path: Path) -> None:
    w = World(tmp_path)
    ld = w.leader()
    w.settle(ld.apply(cmd("a", "1")))
    assert w.settle(ld.verify_leader()) is None
    other = next(a for a in ADDRS if a != ld.node_id)
    new = w.settle(ld.transfer_leadership(other))
    assert new == other and w.svcs[other].is_leader() and not ld.is_leader()
    with pytest.raises(NotLeaderError):
        w.settle(ld.verify_leader())


def test_snapshot_plus_tail_restores_same_fsm_after_full_restart(tmp_path: Path) -> None:
    w = World(tmp_path, threshold=10)
    ld = w.leader()
    for i in range(45):
        w.settle(ld.apply(cmd(f"k{i % 9}", f"v{i}")))
    w.run(0.5)
    want = dict(w.fsms[ld.node_id].data)
    assert all(s.core is not None and s.core.snap_index > 0 for s in w.svcs.values())
    for a in ADDRS:
        snaps = list((tmp_path / a.replace(":", "_") / "raft" / "snapshots").iterdir())
        assert snaps, f"{a} wrote no snapshot"
    for a in ADDRS:
        w.stop(a)
    for a in ADDRS:
        w.start(a)
    ld = w.leader()
    w.run(0.5)
    for a in ADDRS:
        assert w.fsms[a].data == want


def test_lagging_server_gets_snapshot(tmp_path: Path) -> None:
    w = World(tmp_path, threshold=10)
    ld = w.leader()
    lag = next(a for a in ADDRS if a != ld.node_id)
    w.stop(lag)
    for i in range(30):
        w.settle(ld.apply(cmd(f"k{i}", f"v{i}")))
    w.start(lag)
    w.run(2.0)
    assert w.fsms[lag].data == w.fsms[ld.node_id].data
    assert w.fsms[lag].restores == 1  # it caught up through InstallSnapshot
