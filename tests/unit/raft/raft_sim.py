"""A deterministic simulation of a raft cluster: nodes, a lossy network, disks that lose unsynced
writes on crash, and safety checks run after every step. Driven by one seeded ``random.Random``.

Used by test_raft_sim.py; run one seed with ``WANFED_RAFT_SEED=<n>``.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import msgpack

from wanfedtx.raft import messages as m
from wanfedtx.raft.core import (
    LEADER,
    BecameLeader,
    RaftCore,
    RaftOptions,
    Ready,
    RestoredState,
    Snapshot,
)
from wanfedtx.raft.errors import RaftError
from wanfedtx.raft.messages import ENTRY_COMMAND, Entry
from wanfedtx.raft.storage import RaftStorage


class SafetyViolation(AssertionError):
    pass


@attrs.define
class Disk:
    """Durable state plus writes that are not fsynced yet (lost, or partly kept, on crash)."""

    term: int = 0
    vote: str | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = attrs.Factory(list)
    pending: list[tuple[int, list[tuple[Any, ...]]]] = attrs.Factory(list)  # (seq, ops)

    def write(self, seq: int, r: Ready) -> None:
        ops: list[tuple[Any, ...]] = []
        if r.hard_state:
            ops.append(("hs", r.hard_state.term, r.hard_state.vote))
        if r.snapshot:
            ops.append(("snap", r.snapshot))
        if r.truncate_from is not None:
            ops.append(("trunc", r.truncate_from))
        for e in r.entries:
            ops.append(("entry", e))
        self.pending.append((seq, ops))

    def _apply(self, op: tuple[Any, ...]) -> None:
        if op[0] == "hs":
            self.term, self.vote = op[1], op[2]
        elif op[0] == "snap":
            self.install(op[1])
        elif op[0] == "trunc":
            self.entries = [e for e in self.entries if e.index < op[1]]
        else:
            e = op[1]
            base = self.snapshot.index if self.snapshot else 0
            expect = self.entries[-1].index + 1 if self.entries else base + 1
            assert e.index == expect, f"disk append gap: {e.index} != {expect}"
            self.entries.append(e)

    def install(self, snap: Snapshot) -> None:
        if self.snapshot is None or snap.index > self.snapshot.index:
            self.snapshot = snap
            self.entries = [e for e in self.entries if e.index > snap.index]

    def fsync(self, seq: int) -> None:
        while self.pending and self.pending[0][0] <= seq:
            for op in self.pending.pop(0)[1]:
                self._apply(op)

    def crash(self, rng: random.Random) -> None:
        """Lose unsynced writes, except a random prefix that happened to reach the platter."""
        ops = [op for _, o in self.pending for op in o]
        self.pending = []
        keep = rng.randint(0, len(ops)) if ops and rng.random() < 0.5 else 0
        for op in ops[:keep]:
            self._apply(op)

    def restored(self) -> RestoredState:
        return RestoredState(self.term, self.vote, self.snapshot, tuple(self.entries))


class FileDisk:
    """The real ``RaftStorage`` on a real directory; a crash keeps a random prefix of the bytes
    written since the last sync (possibly cutting a record in half) and restart runs recovery."""

    def __init__(self, path: Path, segment_size: int) -> None:
        self.path = path
        self.segment_size = segment_size
        self.st: RaftStorage | None = None
        self.synced = 0  # bytes of the current segment known synced

    def restored(self) -> RestoredState:
        self.st = RaftStorage(self.path, segment_size=self.segment_size)
        state = self.st.open()
        segs = sorted((self.path / "raft" / "log").glob("*.seg"))
        self.synced = segs[-1].stat().st_size if segs else 0  # what recovery kept is on disk
        return state

    def write(self, seq: int, r: Ready) -> None:
        assert self.st is not None
        before = self.st._seg_seq
        self.st.persist(r.hard_state, r.snapshot, r.truncate_from, r.entries)
        if self.st._seg_seq != before:
            self.synced = 0  # a new segment: the previous one was fsynced when it was closed

    def fsync(self, seq: int) -> None:
        assert self.st is not None
        self.st.sync()
        if self.st._seg is not None:
            self.synced = self.st._seg.tell()

    def install(self, snap: Snapshot) -> None:
        assert self.st is not None
        self.st.save_snapshot(snap)

    def crash(self, rng: random.Random) -> None:
        st, self.st = self.st, None
        if st is None or st._seg is None:
            return
        st._seg.flush()
        size = st._seg.tell()
        name = st._seg.name
        st._seg.close()
        keep = rng.randint(self.synced, size) if size > self.synced else size
        os.truncate(name, keep)
        self.synced = 0


class KV:
    """A tiny FSM: a dict plus a hash chain over everything applied."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.index = 0
        self.chain = b""

    def apply(self, e: Entry) -> None:
        self.index = e.index
        if e.kind == ENTRY_COMMAND:
            k, v = msgpack.unpackb(e.data)
            self.data[k] = v
            self.chain = hashlib.sha256(self.chain + e.data).digest()

    def snapshot(self) -> bytes:
        out: bytes = msgpack.packb([self.index, self.chain, self.data])
        return out

    def restore(self, snap: Snapshot) -> None:
        self.index, self.chain, self.data = msgpack.unpackb(snap.data)
        assert self.index == snap.index


@attrs.define
class Node:
    id: str
    disk: Any  # Disk or FileDisk
    core: RaftCore | None = None
    fsm: KV = attrs.Factory(KV)
    held: list[tuple[int, list[tuple[str, m.Message]]]] = attrs.Factory(list)
    fsync_at: float = 0.0
    incarnation: int = 0
    tick_at: float = float("inf")  # the tick queued for this incarnation (later ones are stale)


class Sim:
    def __init__(
        self,
        seed: int,
        n: int = 3,
        *,
        loss: float = 0.05,
        crashes: bool = True,
        partitions: bool = True,
        membership: bool = False,
        compaction: bool = True,
        transfers: bool = True,
        trace: Callable[[str], None] | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.opts = RaftOptions(
            election_timeout=1.0,
            heartbeat_interval=0.1,
            max_entries_per_message=self.rng.choice([1, 3, 64]),
            max_inflight=self.rng.choice([1, 4]),
            snapshot_chunk_size=self.rng.choice([7, 64, 4096]),
        )
        self.loss = loss
        self.crash_rate = 0.004
        self.fsync_latency = self.rng.choice([(0.0005, 0.005), (0.002, 0.02), (0.01, 0.08)])
        self.crashes, self.partitions, self.membership = crashes, partitions, membership
        self.compaction, self.transfers = compaction, transfers
        self.trace = trace
        self.now = 0.0
        self.q: list[tuple[float, int, str, Any]] = []
        self.qseq = 0
        self.ids = [f"n{i}" for i in range(n)]
        if data_dir is None:
            self.nodes = {i: Node(i, Disk()) for i in self.ids}
        else:
            seg = self.rng.choice([300, 2000, 1 << 20])
            self.nodes = {i: Node(i, FileDisk(data_dir / i, seg)) for i in self.ids}
        self.group: dict[str, int] = dict.fromkeys(self.ids, 0)
        # global knowledge for the checks
        self.leaders: dict[int, str] = {}
        self.entry_key: dict[tuple[int, int], tuple[int, bytes, int | None]] = {}
        self.committed: dict[int, int] = {}  # index -> term, of entries known committed
        # index -> the term of the node that first saw the entry committed (its leader's term):
        # Raft promises the entry to the leaders of every later term, not to a stale leader of
        # an earlier term that a late vote answer elects after the commit.
        self.committed_in: dict[int, int] = {}
        self.applied: dict[int, tuple[int, bytes]] = {}
        self.acked_writes: dict[bytes, int] = {}
        self.proposed: dict[tuple[str, int], tuple[int, bytes]] = {}
        self.client_seq = 0
        self.steps = 0
        for i in self.ids:
            self._start(i, bootstrap=True)

    # -- plumbing -----------------------------------------------------------------------------

    def log(self, s: str) -> None:
        if self.trace:
            self.trace(f"{self.now:9.4f} {s}")

    def at(self, t: float, kind: str, arg: Any) -> None:
        self.qseq += 1
        heapq.heappush(self.q, (t, self.qseq, kind, arg))

    def _start(self, i: str, bootstrap: bool = False) -> None:
        node = self.nodes[i]
        node.incarnation += 1
        node.fsm = KV()
        node.held = []
        node.core = RaftCore(
            i, self.opts, random.Random(self.rng.random()), self.now, node.disk.restored()
        )
        if bootstrap:
            node.core.bootstrap(frozenset(self.ids))
        node.tick_at = float("inf")
        self._pump(i)

    def _arm_tick(self, i: str, core: RaftCore) -> None:
        """Queue the node's next tick when its deadline moved earlier than the tick queued, after
        every input (the host contract: ``next_deadline`` says when to tick next, and an input
        may bring it forward: a server that removed itself waits forever, then becomes leader
        again through messages alone and must heartbeat)."""
        node = self.nodes[i]
        at = max(core.next_deadline(), self.now + 0.001)
        if at < node.tick_at:
            node.tick_at = at
            self.at(at, "tick", (i, node.incarnation, at))

    def _pump(self, i: str) -> None:
        node = self.nodes[i]
        core = node.core
        assert core is not None
        while True:
            r = core.take_ready()
            if r.empty():
                break
            self._check_ready(i, core, r)
            if r.seq:
                node.disk.write(r.seq, r)
                lat = self.rng.uniform(*self.fsync_latency)
                if self.rng.random() < 0.02:
                    lat += self.rng.uniform(0.05, 0.5)  # a disk stall
                node.fsync_at = max(node.fsync_at, self.now) + lat
                self.at(node.fsync_at, "fsync", (i, node.incarnation, r.seq))
            for dst, msg in r.send_now:
                self._net_send(i, dst, msg)
            if r.messages:
                if r.wait_seq <= core._acked_seq:
                    for dst, msg in r.messages:
                        self._net_send(i, dst, msg)
                else:
                    node.held.append((r.wait_seq, r.messages))
            if r.restore:
                node.fsm.restore(r.restore)
            for e in r.apply:
                self._check_apply(i, e)
                node.fsm.apply(e)
            for ev in r.events:
                if isinstance(ev, BecameLeader):
                    self._check_new_leader(i, core, ev.term)
        self._check_state(i, core)
        self._arm_tick(i, core)

    def _net_send(self, src: str, dst: str, msg: m.Message) -> None:
        if dst not in self.nodes:
            return
        raw = m.encode(msg)
        assert m.decode(raw) == msg
        if self.rng.random() < self.loss:
            return
        delay = self.rng.uniform(0.001, 0.03)
        if self.rng.random() < 0.02:
            delay += self.rng.uniform(0.1, 1.5)  # a straggler, delivered very late
        self.at(self.now + delay, "deliver", (src, dst, raw))
        if self.rng.random() < 0.01:
            self.at(self.now + delay * 2, "deliver", (src, dst, raw))  # duplicate

    # -- the event loop -----------------------------------------------------------------------

    def step(self) -> bool:
        if not self.q:
            return False
        t, _, kind, arg = heapq.heappop(self.q)
        self.now = max(self.now, t)
        self.steps += 1
        if kind == "deliver":
            src, dst, raw = arg
            node = self.nodes[dst]
            if node.core is None or self.group[src] != self.group[dst]:
                return True
            node.core.receive(m.decode(raw), self.now)
            self._pump(dst)
            self._maybe_crash_now(dst)
        elif kind == "tick":
            i, inc, at = arg
            node = self.nodes[i]
            if node.core is None or node.incarnation != inc or at != node.tick_at:
                return True  # a crashed incarnation's, or replaced by an earlier one
            node.tick_at = float("inf")
            node.core.tick(self.now)
            self._pump(i)  # queues the next tick
            self._maybe_crash_now(i)
        elif kind == "fsync":
            i, inc, seq = arg
            node = self.nodes[i]
            if node.core is None or node.incarnation != inc:
                return True
            node.disk.fsync(seq)
            node.core.persisted(seq)
            still = []
            for wait, msgs in node.held:
                if wait <= seq:
                    for dst, msg in msgs:
                        self._net_send(i, dst, msg)
                else:
                    still.append((wait, msgs))
            node.held = still
            self._pump(i)
        elif kind == "call":
            arg()
        return True

    def _maybe_crash_now(self, i: str) -> None:
        """Crash right after a step, often between a write and its fsync."""
        if self.crashes and self.rng.random() < self.crash_rate:
            self.crash(i)
            self.at(self.now + self.rng.uniform(0.05, 2.0), "call", lambda: self.restart(i))

    def run_until(self, t_end: float) -> None:
        while self.q and self.q[0][0] <= t_end:
            self.step()
        self.now = max(self.now, t_end)

    # -- faults and workload ------------------------------------------------------------------

    def live(self) -> list[str]:
        return [i for i in self.ids if self.nodes[i].core is not None]

    def leader(self) -> str | None:
        best = None
        for i in self.live():
            c = self.nodes[i].core
            assert c is not None
            if c.role == LEADER and (best is None or c.term > self.nodes[best].core.term):  # type: ignore[union-attr]
                best = i
        return best

    def crash(self, i: str) -> None:
        node = self.nodes[i]
        if node.core is None:
            return
        self.log(f"crash {i}")
        node.core = None
        node.incarnation += 1
        node.disk.crash(self.rng)

    def restart(self, i: str) -> None:
        if self.nodes[i].core is None:
            self.log(f"restart {i}")
            self._start(i)

    def propose(self, i: str | None = None) -> None:
        i = i or self.leader() or self.rng.choice(self.ids)
        core = self.nodes[i].core
        if core is None:
            return
        self.client_seq += 1
        data = msgpack.packb([f"k{self.rng.randint(0, 20)}", f"v{self.client_seq}".encode()])
        try:
            e = core.propose(data, self.now)
        except RaftError:
            return
        self.proposed[(i, e.index)] = (e.term, data)
        self._pump(i)

    def chaos(self) -> None:
        """One random fault or operation."""
        r = self.rng.random()
        live = self.live()
        if r < 0.5:
            for _ in range(self.rng.randint(1, 5)):
                self.propose()
        elif r < 0.6 and self.crashes:
            if live and self.rng.random() < 0.5:
                self.crash(self.rng.choice(live))
            else:
                for i in self.ids:
                    self.restart(i)
        elif r < 0.7 and self.partitions:
            if self.rng.random() < 0.5:
                self.group = {i: self.rng.randint(0, 1) for i in self.ids}
            else:
                self.group = dict.fromkeys(self.ids, 0)
        elif r < 0.75 and self.compaction:
            i = self.rng.choice(live) if live else None
            if i:
                node = self.nodes[i]
                c = node.core
                assert c is not None
                if c.applied > max(c.snap_index, c.snapshot_index):
                    trailing = self.rng.choice([0, 0, 2, 10, 40])
                    snap = c.compact(c.applied, node.fsm.snapshot(), trailing)
                    node.disk.install(snap)  # the host stores the snapshot durably first
                    self._pump(i)
        elif r < 0.8 and self.transfers:
            ld = self.leader()
            if ld:
                try:
                    self.nodes[ld].core.transfer_leadership(now=self.now)  # type: ignore[union-attr]
                except RaftError:
                    pass
                self._pump(ld)
        elif r < 0.85 and self.membership:
            ld = self.leader()
            if ld:
                c = self.nodes[ld].core
                assert c is not None
                try:
                    outside = [i for i in self.ids if i not in c.voters]
                    if outside and (len(c.voters) <= 3 or self.rng.random() < 0.5):
                        c.change_config(add=self.rng.choice(outside), now=self.now)
                    else:
                        c.change_config(remove=self.rng.choice(sorted(c.voters)), now=self.now)
                except RaftError:
                    pass
                self._pump(ld)
        elif r < 0.9:
            ld = self.leader()
            if ld:
                self.nodes[ld].core.read_index(("read", self.now), self.now)  # type: ignore[union-attr]
                self._pump(ld)

    def run(self, duration: float = 15.0, chaos_every: float = 0.15) -> None:
        t = 0.0
        while t < duration:
            t += self.rng.expovariate(1 / chaos_every)
            self.run_until(t)
            self.chaos()

    def heal_and_converge(self, timeout: float = 30.0) -> None:
        """No more faults: everything must recover, elect a leader and agree."""
        self.loss = 0.0
        self.crash_rate = 0.0
        self.group = dict.fromkeys(self.ids, 0)
        for i in self.ids:
            self.restart(i)
        deadline = self.now + timeout
        marker: tuple[int, int] | None = None
        while self.now < deadline:
            self.run_until(self.now + 0.5)
            ld = self.leader()
            if ld is None:
                continue
            c = self.nodes[ld].core
            assert c is not None
            if marker is None or marker[1] != c.term:
                try:
                    e = c.propose(msgpack.packb(["final", b"x"]), self.now)
                except RaftError:
                    continue
                marker = (e.index, e.term)
                self._pump(ld)
                continue
            members = [self.nodes[i].core for i in c.voters]
            if all(x is not None and x.applied >= marker[0] for x in members):
                return
        raise SafetyViolation(f"seed {self.seed}: cluster did not converge within {timeout}s")

    # -- checks (run after every step) --------------------------------------------------------

    def _check_ready(self, i: str, core: RaftCore, r: Ready) -> None:
        # Log matching: an (index, term) pair names one entry whose predecessor has one term.
        prev_term = None
        for e in r.entries:
            pt = prev_term if prev_term is not None else core.term_at(e.index - 1)
            key = (e.index, e.term)
            val = (e.kind, e.data, pt)
            old = self.entry_key.setdefault(key, val)
            if old != val:
                raise SafetyViolation(
                    f"seed {self.seed}: log matching violated at {key} on {i}: {old} != {val}"
                )
            prev_term = e.term

    def _check_new_leader(self, i: str, core: RaftCore, term: int) -> None:
        old = self.leaders.setdefault(term, i)
        if old != i:
            raise SafetyViolation(f"seed {self.seed}: two leaders in term {term}: {old}, {i}")
        # Leader completeness: every entry committed in an earlier term is in the new leader's log.
        for idx, t in self.committed.items():
            if idx <= core.snap_index or self.committed_in[idx] >= term:
                continue
            if core.term_at(idx) != t:
                raise SafetyViolation(
                    f"seed {self.seed}: leader {i} (term {term}) lacks committed entry "
                    f"{idx}/{t} (has {core.term_at(idx)})"
                )

    def _check_apply(self, i: str, e: Entry) -> None:
        val = (e.term, e.data)
        old = self.applied.setdefault(e.index, val)
        if old != val:
            raise SafetyViolation(
                f"seed {self.seed}: state machine safety: {i} applied {val} at {e.index}, "
                f"another node applied {old}"
            )

    def _check_state(self, i: str, core: RaftCore) -> None:
        if not (core.snap_index <= core.applied <= core.commit <= core.last_index()):
            raise SafetyViolation(
                f"seed {self.seed}: {i} bad indexes snap={core.snap_index} "
                f"applied={core.applied} commit={core.commit} last={core.last_index()}"
            )
        for idx in range(
            max(core.snap_index + 1, max(self.committed, default=0) + 1), core.commit + 1
        ):
            t = core.term_at(idx)
            assert t is not None
            self.committed[idx] = t
            self.committed_in[idx] = core.term
        if core.role == LEADER:
            old = self.leaders.get(core.term)
            if old is not None and old != i:
                raise SafetyViolation(f"seed {self.seed}: two leaders in term {core.term}")
