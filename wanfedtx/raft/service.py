# -*- test-case-name: tests.unit.raft.test_raft_bounds,tests.unit.raft.test_raft_service -*-
"""``RaftService``: the Twisted shell around the sans-IO core; implements ``IConsensus``.

One reactor turn of inputs (proposals, received messages) becomes one ``Ready``; what it asks to
persist goes to the group commit (``groupcommit.py``: whole groups written and synced at once,
on the writer thread or, for a small batch on a fast disk, inline). Messages that depend on
persisted state are held until their sync finished; committed entries are applied to the FSM in
order on the reactor thread, and the Deferreds of ``apply`` fire with ``(index, result)``. A
follower starts writing what a turn brought before it applies what the leader says is committed:
its answer, which the leader waits for, does not wait for the FSM.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.raft.core import (
    ERR_LEADERSHIP_LOST,
    ERR_NOT_LEADER,
    LEADER,
    BecameLeader,
    LeaderChanged,
    ProtocolViolation,
    RaftCore,
    RaftOptions,
    Ready,
    SteppedDown,
)
from wanfedtx.raft.errors import LeadershipLostError, NotLeaderError, RaftError
from wanfedtx.raft.fsmsnapshot import pack_fsm_snapshot, restore_fsm_snapshot
from wanfedtx.raft.groupcommit import GroupCommit
from wanfedtx.raft.interfaces import IRaftFSM, IRaftTransport
from wanfedtx.raft.messages import ENTRY_COMMAND, Entry, Message
from wanfedtx.raft.metrics import RaftMetrics
from wanfedtx.raft.storage import RaftStorage
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.reactors import ReactorLike
from wanfedtx.services import Service

log = Logger(namespace="wanfedtx.raft")

ERR_SHUTDOWN = "raft is already shutdown"
WARN_ENTRY_BYTES = 1024 * 1024  # Consul's raftWarnSize
_MAX_SEEN_VIOLATIONS = 1024  # (sender, reason) pairs remembered for log-once


_ROLE_NAMES = {"leader": "Leader", "follower": "Follower", "candidate": "Candidate",
               "pre-candidate": "Candidate"}


class RaftService(Service):
    """A raft server: durable log in ``data_dir``, peers addressed by ``host:port``.

    ``peers``: the other servers' addresses (e.g. from ``retry_join``); with ``bootstrap_expect``
    N > 0, a server with no raft state bootstraps the configuration {self} + peers once that set has
    N members (every server must be given the same set).
    """

    def __init__(
        self,
        *,
        node_id: str,
        data_dir: str,
        fsm: IRaftFSM,
        transport: IRaftTransport,
        reactor: ReactorLike,
        peers: Sequence[str] = (),
        bootstrap_expect: int = 0,
        options: RaftOptions | None = None,
        rng: random.Random | None = None,
        snapshot_threshold: int = 8192,
        trailing_logs: int = 10240,
        threaded_writer: bool = True,
        segment_size: int = 64 * 1024 * 1024,
        metrics: Registry = REGISTRY,
    ) -> None:
        self.node_id = node_id
        self.fsm = fsm
        self.transport = transport
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.peers_config = [p for p in peers if p != node_id]
        self.bootstrap_expect = bootstrap_expect
        self.options = options or RaftOptions()
        self.rng = rng or random.Random()
        self.snapshot_threshold = snapshot_threshold
        self.trailing_logs = trailing_logs
        self.threaded_writer = threaded_writer
        self.storage = RaftStorage(data_dir, segment_size=segment_size)
        self.core: RaftCore | None = None
        self._timer: IDelayedCall | None = None
        self._pump_call: IDelayedCall | None = None
        # index -> (term, Deferred, when this leader proposed it or -1.0)
        self._pending: dict[int, tuple[int, Deferred[tuple[int, Any]], float]] = {}
        self._gauges = (-1, -1, -1)  # (term, commit, applied) last written to the gauges
        self._reads: dict[int, Deferred[None]] = {}
        self._read_waits: list[tuple[int, Deferred[None]]] = []
        self._read_seq = 0
        self._observers: list[Callable[[bool], None]] = []
        self._leading_notified = False
        self._leader_term_start: int | None = None
        self._started_at = 0.0
        self._fatal = False
        self._known = {node_id, *self.peers_config}
        self._m = RaftMetrics(metrics)
        self._log = GroupCommit(self.storage, transport.send, self._m,
                                on_durable=self._durable, on_failed=self._storage_failed)
        self._next_contact_sample = 0.0
        self._violation_log = RateLimitedLog(log, self.clock)
        self._violations_seen: set[tuple[str, str]] = set()

    # -- lifecycle --------------------------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        restored = self.storage.open()
        now = self.clock.seconds()
        self._started_at = now
        self.core = RaftCore(self.node_id, self.options, self.rng, now, restored)
        self._log.start(self.reactor if self.threaded_writer else None,
                        f"raft-writer-{self.node_id}")
        self.transport.set_receiver(self._receive)
        self._maybe_bootstrap()
        log.info("raft: started {node} at term {term}, last index {index}", node=self.node_id,
                 term=self.core.term, index=self.core.last_index())
        self._pump()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        for c in (self._timer, self._pump_call):
            if c is not None and c.active():
                c.cancel()
        self._timer = self._pump_call = None
        self._fail_pending(RaftError(ERR_SHUTDOWN))
        self._violation_log.stop()
        core, self.core = self.core, None
        d = self.transport.stop()

        def writer_done(_: object) -> Deferred[None] | None:
            return self._log.writing

        def close(_: object) -> None:
            self.storage.close()
            self._log.stop()  # idle (nothing in flight): the writer thread ends at once
            if core is not None and core.role == LEADER:
                self._notify(False)

        d.addCallback(writer_done)
        d.addCallback(close)
        return d

    def server_discovered(self, addr: str) -> None:
        """A server of this datacenter became known (gossip discovery plugs in here).

        With ``bootstrap_expect`` N, a server without raft state bootstraps once it knows
        exactly N servers (itself included). Every server must see the same N servers; more
        than N known servers means a misconfiguration and bootstrapping is refused (two
        different voter sets could elect two leaders)."""
        if addr not in self._known:
            self._known.add(addr)
            if self.core is not None:
                self._maybe_bootstrap()
                self._schedule_pump()

    def _maybe_bootstrap(self) -> None:
        core = self.core
        if core is None or self.bootstrap_expect <= 0:
            return
        if core.term != 0 or core.last_index() != 0 or core.snapshot is not None:
            return  # has state: already bootstrapped or joined
        n = len(self._known)
        if n == self.bootstrap_expect:
            log.info("raft: bootstrapping cluster with {n} voters: {voters}", n=n,
                     voters=sorted(self._known))
            core.bootstrap(frozenset(self._known))
        elif n > self.bootstrap_expect:
            log.error("raft: {n} servers known but bootstrap_expect is {expect}; not "
                      "bootstrapping: give every server the same bootstrap_expect and peers",
                      n=n, expect=self.bootstrap_expect)
        else:
            log.info("raft: waiting for {expect} servers to bootstrap, know {n}",
                     expect=self.bootstrap_expect, n=n)

    # -- IConsensus -------------------------------------------------------------------------------

    def apply(self, command: bytes) -> Deferred[tuple[int, Any]]:
        core = self.core
        if core is None:
            return fail(RaftError(ERR_SHUTDOWN))
        if len(command) > WARN_ENTRY_BYTES:
            log.warn("raft: Attempting to apply large raft entry: size_in_bytes={size}",
                     size=len(command))
        try:
            e = core.propose(command, self.clock.seconds())
        except RaftError as exc:
            return fail(exc)
        d: Deferred[tuple[int, Any]] = Deferred()
        self._pending[e.index] = (e.term, d, self.clock.seconds())
        if self._pump_call is None:
            self._schedule_pump()
        return d

    def is_leader(self) -> bool:
        return self.core is not None and self.core.role == LEADER

    def verify_leader(self) -> Deferred[None]:
        core = self.core
        if core is None:
            return fail(RaftError(ERR_SHUTDOWN))
        if core.role != LEADER:
            return fail(NotLeaderError(ERR_NOT_LEADER, core.leader))
        self._read_seq += 1
        d: Deferred[None] = Deferred()
        self._reads[self._read_seq] = d
        core.read_index(self._read_seq, self.clock.seconds())
        self._schedule_pump()
        return d

    def last_contact(self) -> float:
        core = self.core
        if core is None or core.role == LEADER:
            return 0.0
        seen = core.last_leader_contact
        since = seen if seen is not None else self._started_at
        return max(0.0, self.clock.seconds() - since)

    def leader_address(self) -> str:
        return (self.core.leader or "") if self.core is not None else ""

    def peers(self) -> list[str]:
        return sorted(self.core.voters) if self.core is not None else []

    def configuration(self) -> tuple[int, list[str]]:
        """The latest raft configuration: its log index and its voters (sorted addresses)."""
        core = self.core
        if core is None:
            return 0, []
        return core.config_index, sorted(core.voters)

    @property
    def fsync_batches(self) -> int:
        """Write batches so far (one sync each); with ``readies_written``, group commit."""
        return self._log.batches

    @property
    def readies_written(self) -> int:
        return self._log.readies_written

    def stats(self) -> dict[str, str]:
        """hashicorp/raft's ``Stats()`` keys that apply here (``/v1/agent/self`` ``raft``)."""
        core = self.core
        if core is None:
            return {"state": "Shutdown"}
        index, voters = self.configuration()
        if core.role == LEADER:
            contact = "0"
        elif core._last_leader_contact < -1e17:
            contact = "never"
        else:
            contact = f"{self.last_contact() * 1000:.3f}ms"
        snap = core.snapshot
        servers = " ".join(f"{{Suffrage:Voter ID:{v} Address:{v}}}" for v in voters)
        return {
            "state": _ROLE_NAMES.get(core.role, core.role),
            "term": str(core.term),
            "last_log_index": str(core.last_index()),
            "last_log_term": str(core.last_term()),
            "commit_index": str(core.commit),
            "applied_index": str(core.applied),
            "fsm_pending": "0",
            "last_snapshot_index": str(snap.index if snap is not None else 0),
            "last_snapshot_term": str(snap.term if snap is not None else 0),
            "latest_configuration_index": str(index),
            "latest_configuration": f"[{servers}]",
            "last_contact": contact,
            "num_peers": str(max(0, len(voters) - 1) if self.node_id in voters else len(voters)),
            "protocol_version": "3",
            "protocol_version_min": "0",
            "protocol_version_max": "3",
            "snapshot_version_min": "0",
            "snapshot_version_max": "1",
        }

    def add_leadership_observer(self, observer: Callable[[bool], None]) -> None:
        self._observers.append(observer)
        if self._leading_notified:
            observer(True)

    def remove_leadership_observer(self, observer: Callable[[bool], None]) -> None:
        self._observers.remove(observer)

    # -- membership and leadership ----------------------------------------------------------------

    def add_voter(self, addr: str) -> Deferred[tuple[int, Any]]:
        return self._config_change(add=addr)

    def remove_server(self, addr: str) -> Deferred[tuple[int, Any]]:
        return self._config_change(remove=addr)

    def _config_change(self, add: str | None = None,
                       remove: str | None = None) -> Deferred[tuple[int, Any]]:
        core = self.core
        if core is None:
            return fail(RaftError(ERR_SHUTDOWN))
        try:
            e = core.change_config(add=add, remove=remove, now=self.clock.seconds())
        except RaftError as exc:
            return fail(exc)
        d: Deferred[tuple[int, Any]] = Deferred()
        self._pending[e.index] = (e.term, d, -1.0)
        self._schedule_pump()
        return d

    def transfer_leadership(self, target: str | None = None) -> Deferred[str]:
        """Hand leadership over (graceful leave); fires with the new leader's address."""
        core = self.core
        if core is None:
            return fail(RaftError(ERR_SHUTDOWN))
        try:
            target = core.transfer_leadership(target, self.clock.seconds())
        except RaftError as exc:
            return fail(exc)
        self._schedule_pump()
        d: Deferred[str] = Deferred()
        deadline = self.clock.seconds() + 2 * self.options.election_timeout

        def check() -> None:
            c = self.core
            if c is None:
                d.errback(RaftError(ERR_SHUTDOWN))
            elif c.role != LEADER and c.leader is not None:
                d.callback(c.leader)
            elif self.clock.seconds() > deadline:
                d.errback(RaftError("leadership transfer timed out"))
            else:
                self.clock.callLater(self.options.heartbeat_interval / 2, check)

        self.clock.callLater(0, check)
        return d

    # -- the loop ---------------------------------------------------------------------------------

    def _receive(self, msg: Message) -> None:
        if self.core is None or self._fatal:
            return
        try:
            self.core.receive(msg, self.clock.seconds())
        except RaftError as e:  # a peer made us break an invariant: drop its message
            self._violation_log.error(
                "raft-invariant", "raft: dropped a message: from={sender} error={error}",
                sender=msg.src, error=str(e))
        self._schedule_pump()

    def _schedule_pump(self) -> None:
        if self._pump_call is None and self.core is not None:
            self._pump_call = self.clock.callLater(0, self._pump)

    def _tick(self) -> None:
        self._timer = None
        if self.core is None or self._fatal:
            return
        now = self.clock.seconds()
        self.core.tick(now)
        self._sample_follower_contact(now)
        self._pump()

    def _sample_follower_contact(self, now: float) -> None:
        """``raft.leader.lastContact``: as hashicorp/raft's lease check, every 500 ms the
        leader records how long ago each follower last answered it."""
        core = self.core
        if core is None or core.role != LEADER or now < self._next_contact_sample:
            return
        self._next_contact_sample = now + 0.5
        for last_ack in core.follower_acks().values():
            self._m.last_contact.observe(max(0.0, now - last_ack))

    def _pump(self) -> None:
        self._pump_call = None
        core = self.core
        if core is None or self._fatal:
            return
        readies = []
        while True:
            r = core.take_ready()
            if r.empty():
                break
            self._stage(r)
            readies.append(r)
        if core.role != LEADER:
            self._log.flush()  # the leader waits for this follower's answer, not for its FSM
        for r in readies:
            self._handle(core, r)
        self._maybe_snapshot(core)
        self._log.flush()
        gauges = (core.term, core.commit, core.applied)
        if gauges != self._gauges:  # the gauges' lock and label check only on a change
            self._gauges = gauges
            self._m.term.set(core.term)
            self._m.commit.set(core.commit)
            self._m.applied.set(core.applied)
        deadline = core.next_deadline()
        delay = max(0.0, deadline - self.clock.seconds())
        if self._timer is not None and self._timer.active():
            if abs(self._timer.getTime() - deadline) < 1e-6:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(delay, self._tick)

    def _stage(self, r: Ready) -> None:
        """A Ready's writes and messages: queued, sent, or held until it is durable."""
        if r.seq:
            self._log.add(r)
        for dst, msg in r.send_now:
            self.transport.send(dst, msg)
        if r.messages:
            self._log.send_when_durable(r.wait_seq, r.messages)

    def _handle(self, core: RaftCore, r: Ready) -> None:
        """The rest of a staged Ready: restore, apply, reads, events."""
        if r.restore is not None:
            restore_fsm_snapshot(self.fsm, r.restore)
            log.info("raft: restored FSM from snapshot at index {index}", index=r.restore.index)
        if r.apply:
            self._apply_committed(r.apply)
            self._release_reads(core.applied)
        for rr in r.reads:
            rd = self._reads.pop(rr.req, None)
            if rd is None:
                continue
            if rr.index is None:
                rd.errback(NotLeaderError(rr.error or ERR_NOT_LEADER, core.leader))
            else:
                self._read_waits.append((rr.index, rd))
        self._release_reads(core.applied)
        for ev in r.events:
            if isinstance(ev, LeaderChanged):
                log.info("raft: leader is now {leader} (term {term})",
                         leader=ev.leader or "unknown", term=ev.term)
            elif isinstance(ev, BecameLeader):
                log.info("raft: entering leader state (term {term})", term=ev.term)
                self._m.leader.inc()
                self._leader_term_start = core.last_index()
            elif isinstance(ev, SteppedDown):
                log.info("raft: entering follower state (term {term})", term=ev.term)
                self._leader_term_start = None
                self._fail_pending(LeadershipLostError(ERR_LEADERSHIP_LOST))
                self._notify(False)
            elif isinstance(ev, ProtocolViolation):
                self._violation(ev)
        if (self._leader_term_start is not None and core.role == LEADER
                and core.applied >= self._leader_term_start and not self._leading_notified):
            self._notify(True)

    def _apply_committed(self, entries: Sequence[Entry]) -> None:
        """Apply committed entries in order, each waiting ``apply`` Deferred fired right after
        its entry; metrics once per batch (``raft.commitTime``: the oldest entry this leader
        proposed in the batch, as hashicorp/raft measures it per commit)."""
        fsm_apply = self.fsm.apply
        oldest = -1.0
        answered = 0
        for e in entries:
            result: Any = None
            if e.kind == ENTRY_COMMAND:
                try:
                    result = fsm_apply(e.index, e.data)
                except Exception as exc:
                    result = exc
            # self._pending, not a local: a callback may fail (and replace) every pending one
            pend = self._pending.pop(e.index, None)
            if pend is None:
                continue
            term, d, proposed = pend
            if oldest < 0.0 <= proposed:
                oldest = proposed
            if term != e.term:
                d.errback(LeadershipLostError(ERR_LEADERSHIP_LOST))
            elif isinstance(result, Exception):
                d.errback(result)
            else:
                answered += 1
                d.callback((e.index, result))
        if oldest >= 0.0:
            self._m.commit_time.observe(self.clock.seconds() - oldest)
        if answered:
            self._m.apply.inc(answered)

    def _violation(self, ev: ProtocolViolation) -> None:
        """Count every refused message; log each (sender, reason) once (and every reason at
        most at the rate-limited log's pace, whatever the number of senders)."""
        self._m.violations.inc(reason=ev.reason)
        key = (ev.sender, ev.reason)
        if key in self._violations_seen:
            return
        if len(self._violations_seen) < _MAX_SEEN_VIOLATIONS:
            self._violations_seen.add(key)
        self._violation_log.warn(
            f"raft-violation-{ev.reason}",
            "raft: refused a message: from={sender} reason={violation} error={detail}",
            sender=ev.sender, violation=ev.reason, detail=ev.detail)

    def _release_reads(self, applied: int) -> None:
        if not self._read_waits:
            return
        ready = [d for idx, d in self._read_waits if idx <= applied]
        self._read_waits = [(idx, d) for idx, d in self._read_waits if idx > applied]
        for d in ready:
            d.callback(None)

    def _notify(self, leading: bool) -> None:
        if leading == self._leading_notified:
            return
        self._leading_notified = leading
        for obs in list(self._observers):
            try:
                obs(leading)
            except Exception:
                log.failure("raft: leadership observer failed")

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for _, d, _ in pending.values():
            d.errback(exc)
        reads = list(self._reads.values()) + [d for _, d in self._read_waits]
        self._reads, self._read_waits = {}, []
        for d2 in reads:
            d2.errback(exc)

    def _maybe_snapshot(self, core: RaftCore) -> None:
        if core.applied - core.snapshot_index < self.snapshot_threshold:
            return
        snap = core.compact(core.applied, pack_fsm_snapshot(self.fsm), self.trailing_logs)
        log.info("raft: snapshot at index {index} ({size} bytes); log compacted",
                 index=snap.index, size=len(snap.data))
        self._log.add(snap)
        self._m.snapshots.inc()

    # -- persistence (groupcommit.py) ------------------------------------------------------------

    def _durable(self, seq: int) -> None:
        if self.core is not None:
            self.core.persisted(seq)
        self._schedule_pump()

    def _storage_failed(self, f: Failure) -> None:
        self._fatal = True
        log.failure("raft: writing to the data directory failed; this server stops "
                    "taking part in raft (fix the disk and restart it)", f)
        self._fail_pending(RaftError("raft storage failed"))
