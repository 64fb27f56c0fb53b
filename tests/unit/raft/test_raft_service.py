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

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm.machine import FSM
from wanfedtx.metrics import Registry
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
    def __init__(self, tmp: Path, threshold: int = 1000, fsm_factory: Any = None,
                 trailing: int = 0) -> None:
        self.trailing = trailing
        self.fsm_factory = fsm_factory or KV
        self.clock = Clock()
        self.clock.advance(1000)
        self.net = MemoryNetwork(self.clock)
        self.tmp = tmp
        self.threshold = threshold
        self.svcs: dict[str, RaftService] = {}
        self.fsms: dict[str, Any] = {}
        for a in ADDRS:
            self.start(a)

    def start(self, a: str) -> RaftService:
        fsm = self.fsms[a] = self.fsm_factory()
        s = RaftService(node_id=a, data_dir=str(self.tmp / a.replace(":", "_")), fsm=fsm,
                        transport=self.net.transport(a), reactor=self.clock, peers=ADDRS,
                        bootstrap_expect=3, options=RaftOptions(election_timeout=1.0,
                                                                heartbeat_interval=0.1),
                        rng=random.Random(a), snapshot_threshold=self.threshold,
                        trailing_logs=self.trailing,
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
    assert all(s.core is not None and s.core.snapshot_index > 0 for s in w.svcs.values())
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


def test_trailing_logs_spare_a_slightly_lagging_server_the_snapshot(tmp_path: Path) -> None:
    w = World(tmp_path, threshold=10, trailing=50)
    ld = w.leader()
    lag = next(a for a in ADDRS if a != ld.node_id)
    w.stop(lag)
    for i in range(30):
        w.settle(ld.apply(cmd(f"k{i}", f"v{i}")))
    assert ld.core is not None and ld.core.snapshot_index > 10 and ld.core.snap_index < 10
    w.start(lag)
    w.run(2.0)
    assert w.fsms[lag].data == w.fsms[ld.node_id].data
    assert w.fsms[lag].restores == 0  # plain entries, no snapshot transfer


def test_real_fsm_catalog_endpoints_status_and_restart(tmp_path: Path) -> None:
    """The project's FSM and state store on raft, driven through the catalog RPC endpoints."""
    w = World(tmp_path, threshold=5, fsm_factory=FSM)

    def endpoints(a: str) -> dict[str, Any]:
        return Endpoints("dc1", w.fsms[a].state, w.svcs[a], w.clock).handlers()

    ld = w.leader()
    eps = endpoints(ld.node_id)
    for i in range(12):
        w.settle(eps["KVS.Apply"]({"Op": "set", "DirEnt": {"Key": f"app/k{i}",
                                                           "Value": b"v%d" % i}}))
    got = w.settle(eps["KVS.Get"]({"Key": "app/k11", "RequireConsistent": True}))
    assert got["Entries"][0]["Value"] == b"v11" and got["Index"] > 0
    follower = next(a for a in ADDRS if a != ld.node_id)
    w.run(0.5)
    assert w.settle(endpoints(follower)["Status.Leader"]({})) == ld.node_id
    assert w.settle(endpoints(follower)["Status.Peers"]({})) == sorted(ADDRS)
    stale = w.settle(endpoints(follower)["KVS.Get"]({"Key": "app/k3", "AllowStale": True}))
    assert stale["Entries"][0]["Value"] == b"v3" and stale["KnownLeader"] is True
    for a in ADDRS:
        assert list((tmp_path / a.replace(":", "_") / "raft" / "snapshots").iterdir())
        w.stop(a)
    for a in ADDRS:
        w.start(a)
    ld = w.leader()
    w.run(0.5)
    for a in ADDRS:
        got = w.settle(endpoints(a)["KVS.Get"]({"Key": "app/k7", "AllowStale": True}))
        assert got["Entries"][0]["Value"] == b"v7"


def test_remove_and_add_voter(tmp_path: Path) -> None:
    w = World(tmp_path)
    ld = w.leader()
    w.settle(ld.apply(cmd("a", "1")))
    gone = next(a for a in ADDRS if a != ld.node_id)
    w.stop(gone)
    w.settle(ld.remove_server(gone))
    assert ld.peers() == sorted(a for a in ADDRS if a != gone)
    third = next(a for a in ADDRS if a not in (gone, ld.node_id))
    w.stop(third)  # two of three down, but the configuration has two voters: no quorum
    d = ld.apply(cmd("b", "2"))
    w.run(0.5)
    assert not d.called
    w.start(third)
    w.settle(d)
    ld = w.leader()
    w.settle(ld.add_voter(gone))
    w.start(gone)
    w.run(1.0)
    assert ld.peers() == sorted(ADDRS)
    assert w.fsms[gone].data == {"a": "1", "b": "2"}


def test_bootstrap_expect_waits_for_discovery_and_metrics(tmp_path: Path) -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    reg = Registry()
    svcs = []
    for a in ADDRS:
        s = RaftService(node_id=a, data_dir=str(tmp_path / a.replace(":", "_")), fsm=KV(),
                        transport=net.transport(a), reactor=clock, peers=[],
                        bootstrap_expect=3, rng=random.Random(a), threaded_writer=False,
                        metrics=reg)
        s.startService()
        svcs.append(s)
    for _ in range(300):
        clock.advance(0.05)
    assert not any(s.is_leader() for s in svcs)  # nobody knows 3 servers yet
    assert all(s.core is not None and s.core.last_index() == 0 for s in svcs)
    for s in svcs:
        for a in ADDRS:
            s.server_discovered(a)
    for _ in range(300):
        clock.advance(0.05)
        if any(s.is_leader() for s in svcs):
            break
    ld = next(s for s in svcs if s.is_leader())
    out: list[Any] = []
    ld.apply(cmd("a", "b")).addBoth(out.append)
    for _ in range(50):
        clock.advance(0.01)
    assert out and out[0][0] > 0
    text = reg.render()
    assert "consul_raft_apply 1" in text
    assert "consul_raft_state_leader 1" in text
    assert "consul_raft_fsync_batches" in text
    assert "consul_raft_commitTime_count 1\n" in text
    for _ in range(30):  # 1.5 s of leadership: the lease check samples every 0.5 s
        clock.advance(0.05)
    contact = reg.summary("raft.leader.lastContact", "")
    assert contact.count() >= 4  # two followers, at least two samples each
    assert 0 <= contact.total() / contact.count() < 1.0
    for s in svcs:
        s.stopService()
