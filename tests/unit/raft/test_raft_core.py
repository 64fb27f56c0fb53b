"""Directed scenarios for the sans-IO raft core (messages delivered by hand, disks sync at once)."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import pytest

from wanfedtx.raft import messages as m
from wanfedtx.raft.core import (
    LEADER,
    BecameLeader,
    RaftCore,
    RaftOptions,
    ReadResult,
    RestoredState,
)
from wanfedtx.raft.errors import ConfigChangeError, LeadershipTransferError, NotLeaderError


class Cluster:
    """Nodes whose disks sync instantly; messages wait in ``inbox`` until delivered by hand."""

    def __init__(self, n: int, **opts: object) -> None:
        self.opts = RaftOptions(**opts)  # type: ignore[arg-type]
        self.now = 0.0
        self.ids = [f"s{i + 1}" for i in range(n)]
        self.disks: dict[str, RestoredState] = {}
        self.nodes: dict[str, RaftCore] = {}
        self.inbox: list[tuple[str, str, m.Message]] = []
        self.applied: dict[str, list[m.Entry]] = {i: [] for i in self.ids}
        self.reads: list[ReadResult] = []
        self.down: set[str] = set()
        for k, i in enumerate(self.ids):
            self.nodes[i] = RaftCore(i, self.opts, random.Random(k), 0.0)
            self.nodes[i].bootstrap(frozenset(self.ids))
            self.pump(i)

    def pump(self, i: str) -> None:
        c = self.nodes[i]
        while True:
            r = c.take_ready()
            if r.empty():
                return
            d = self.disks.get(i, RestoredState())
            ents = list(d.entries)
            snap = r.snapshot or d.snapshot
            if r.truncate_from is not None:
                ents = [e for e in ents if e.index < r.truncate_from]
            ents += r.entries
            hs = r.hard_state
            self.disks[i] = RestoredState(
                hs.term if hs else d.term, hs.vote if hs else d.vote, snap, tuple(ents)
            )
            if r.seq:
                c.persisted(r.seq)
            for dst, msg in r.send_now + r.messages:
                self.inbox.append((i, dst, msg))
            self.applied[i] += r.apply
            self.reads += r.reads

    def deliver(self, pred: Callable[[str, str, m.Message], bool] = lambda s, d, x: True) -> int:
        n = 0
        while True:
            batch = [x for x in self.inbox if pred(*x)]
            if not batch:
                return n
            self.inbox = [x for x in self.inbox if not pred(*x)]
            for src, dst, msg in batch:
                if dst in self.down or src in self.down:
                    continue
                self.nodes[dst].receive(msg, self.now)
                self.pump(dst)
                n += 1

    def tick(self, i: str, dt: float = 0.0) -> None:
        self.now += dt
        self.nodes[i].tick(self.now)
        self.pump(i)

    def elect(self, i: str, among: set[str] | None = None, votes_only: bool = False) -> None:
        among = among or set(self.ids)
        vote_types = (m.RequestVote, m.RequestVoteResponse)
        for _ in range(3):  # a first pre-vote round may only teach it a newer term
            self.now += 5
            self.tick(i)
            self.deliver(
                lambda s, d, x: (
                    s in among and d in among and (not votes_only or isinstance(x, vote_types))
                )
            )
            if self.nodes[i].role == LEADER:
                return
        raise AssertionError(f"{i} was not elected")

    def crash(self, i: str) -> None:
        self.down.add(i)
        self.inbox = [x for x in self.inbox if x[0] != i]

    def restart(self, i: str) -> None:
        self.down.discard(i)
        self.nodes[i] = RaftCore(i, self.opts, random.Random(99), self.now, self.disks[i])
        self.pump(i)


def test_single_node_commits_and_applies() -> None:
    c = Cluster(1)
    c.elect("s1")
    e = c.nodes["s1"].propose(b"x", c.now)
    c.pump("s1")
    assert [a.data for a in c.applied["s1"]][-1] == b"x"
    assert c.nodes["s1"].commit == e.index


def test_pre_vote_rejoining_node_does_not_disrupt_leader() -> None:
    c = Cluster(3)
    c.elect("s1")
    term = c.nodes["s1"].term
    # s3 is cut off for 10 election timeouts: pre-vote never raises its term.
    for _ in range(100):
        c.now += 0.1
        for i in c.ids:
            c.tick(i)
        c.inbox = [x for x in c.inbox if "s3" not in (x[0], x[1])]
        c.deliver()
    assert c.nodes["s3"].term == term
    assert c.nodes["s3"].role != LEADER
    # Reconnected: its pre-votes are refused (s2 hears from the leader); nothing is disrupted.
    for _ in range(50):
        c.now += 0.1
        for i in c.ids:
            c.tick(i)
        c.deliver()
    assert c.nodes["s1"].role == LEADER and c.nodes["s1"].term == term
    assert c.nodes["s3"].leader == "s1"


def test_figure_8_leader_does_not_commit_old_term_entry_by_counting() -> None:
    """Raft paper §5.4.2 / Figure 8, with one entry per message."""
    c = Cluster(5, max_entries_per_message=1, max_inflight=1)
    c.elect("s1")
    c.deliver()
    # (a) s1 (term t) replicates entry X at index i only to s2.
    x = c.nodes["s1"].propose(b"X", c.now)
    c.pump("s1")
    c.deliver(lambda s, d, msg: {s, d} <= {"s1", "s2"})
    c.inbox.clear()
    # (b) s1 crashes; s5 is elected by s3, s4, s5 and appends Y at the same index.
    c.crash("s1")
    c.elect("s5", {"s3", "s4", "s5"}, votes_only=True)
    c.inbox.clear()
    y = c.nodes["s5"].propose(b"Y", c.now)
    c.pump("s5")
    assert y.index == x.index + 1 or y.index >= x.index
    c.inbox.clear()
    # (c) s5 crashes; s1 restarts and wins with s2, s3; it replicates X (old term) to s3 only.
    c.crash("s5")
    c.restart("s1")
    c.elect("s1", {"s1", "s2", "s3"}, votes_only=True)
    # Only entries up to X get through to s2 and s3 (the new leader's no-op is lost each time).
    for _ in range(20):
        kept = []
        for src, dst, msg in c.inbox:
            if (src != "s1" and dst != "s1") or "s4" in (src, dst) or "s5" in (src, dst):
                continue
            if isinstance(msg, m.AppendEntries) and msg.entries:
                keep = tuple(e for e in msg.entries if e.index <= x.index)
                msg = attrs.evolve(msg, entries=keep)
            kept.append((src, dst, msg))
        c.inbox = []
        for _src, dst, msg in kept:
            c.nodes[dst].receive(msg, c.now)
            c.pump(dst)
        c.tick("s1", 0.1)
    assert c.nodes["s3"].term_at(x.index) == x.term  # X is now on a majority (s1, s2, s3)...
    assert c.nodes["s1"].commit < x.index  # ...but must not be committed by counting replicas


def test_read_index_needs_quorum_round() -> None:
    c = Cluster(3)
    c.elect("s1")
    c.deliver()
    c.nodes["s1"].read_index("r1", c.now)
    c.pump("s1")
    assert not c.reads
    c.deliver()
    assert c.reads == [ReadResult("r1", c.nodes["s1"].commit)]
    # A deposed leader (partitioned) cannot confirm a read.
    c.nodes["s1"].read_index("r2", c.now)
    c.pump("s1")
    c.inbox.clear()
    c.tick("s1", 5)  # check-quorum: no acks for an election timeout -> steps down
    assert c.nodes["s1"].role != LEADER
    assert c.reads[-1].req == "r2" and c.reads[-1].index is None


def test_leadership_transfer() -> None:
    c = Cluster(3)
    c.elect("s1")
    c.deliver()
    assert c.nodes["s1"].transfer_leadership("s3", c.now) == "s3"
    c.pump("s1")
    with pytest.raises(LeadershipTransferError):
        c.nodes["s1"].propose(b"x", c.now)
    c.deliver()
    assert c.nodes["s3"].role == LEADER
    assert c.nodes["s1"].role != LEADER
    with pytest.raises(NotLeaderError):
        c.nodes["s1"].propose(b"x", c.now)


def test_membership_one_at_a_time_and_removed_leader_steps_down() -> None:
    c = Cluster(3)
    c.elect("s1")
    c.deliver()
    s1 = c.nodes["s1"]
    s1.change_config(remove="s3", now=c.now)
    with pytest.raises(ConfigChangeError):
        s1.change_config(remove="s2", now=c.now)  # the first is not committed yet
    c.pump("s1")
    c.deliver()
    assert s1.committed_voters() == {"s1", "s2"}
    s1.change_config(remove="s1", now=c.now)
    c.pump("s1")
    c.deliver()
    assert s1.role != LEADER
    c.tick("s2", 5)
    c.deliver()
    assert c.nodes["s2"].role == LEADER and c.nodes["s2"].voters == {"s2"}


def test_snapshot_install_in_chunks_to_lagging_follower() -> None:
    c = Cluster(3, snapshot_chunk_size=5)
    c.elect("s1")
    c.deliver()
    c.crash("s3")
    s1 = c.nodes["s1"]
    for k in range(20):
        s1.propose(b"cmd%d" % k, c.now)
        c.pump("s1")
        c.deliver()
    s1.compact(s1.applied, b"0123456789abcdefghijklmnopqrstuvwxyz" * 3)
    c.restart("s3")
    for _ in range(30):
        c.tick("s1", 0.2)
        c.deliver()
    s3 = c.nodes["s3"]
    assert s3.snapshot is not None and s3.snapshot.data == s1.snapshot.data  # type: ignore[union-attr]
    assert s3.commit == s1.commit


def test_became_leader_event() -> None:
    c = Cluster(3)
    c.now += 5
    c.nodes["s2"].tick(c.now)
    evs = []
    for _ in range(5):
        r = c.nodes["s2"].take_ready()
        evs += r.events
        if r.seq:
            c.nodes["s2"].persisted(r.seq)
        c.inbox += [("s2", d, x) for d, x in r.send_now + r.messages]
        c.deliver(lambda s, d, x: d != "s2")
        for _s, _d, x in [t for t in c.inbox if t[1] == "s2"]:
            c.nodes["s2"].receive(x, c.now)
        c.inbox = [t for t in c.inbox if t[1] != "s2"]
    assert BecameLeader(c.nodes["s2"].term) in evs
