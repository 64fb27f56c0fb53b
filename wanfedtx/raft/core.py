"""The sans-IO Raft core: one server's consensus state machine, with no I/O and no clock of its own.

Inputs: ``receive(msg, now)``, ``tick(now)``, ``propose(data, now)``, ``read_index(req, now)``,
``change_config(...)``, ``transfer_leadership(...)``, ``compact(...)`` and ``persisted(seq)`` (the
host's acknowledgement that everything up to a persistence token is on disk).

Outputs come from ``take_ready()``: a ``Ready`` holds what to persist (hard state, truncation,
entries, an installed snapshot), messages to send now, messages to send only once everything up to
``wait_seq`` is durable, committed entries to apply, a snapshot to restore into the FSM, results of
reads and leadership events; ``next_deadline()`` says when to call ``tick`` again.

The host contract (see docs/raft.md):
  1. persist the Ready's hard state / snapshot / truncation / entries in that order, then
     fsync, then call ``persisted(ready.seq)``; acknowledgements come in seq order;
  2. send ``ready.send_now`` immediately, and ``ready.messages`` only when every persistence
     token up to ``ready.wait_seq`` is acknowledged;
  3. restore ``ready.restore`` (if any) into the FSM, then apply ``ready.apply`` in order.

What it implements (Ongaro's thesis): leader election with randomized timeouts and pre-vote
(§9.6) plus leader stickiness (§4.2.3) and check-quorum; log replication with batching and
pipelining (§10.2), the leader writing its log in parallel with replication (§10.2.1); commit of
current-term entries only (§3.6.2); read-index leader verification (§6.4); leadership transfer
with TimeoutNow (§3.10); single-server membership changes that take effect when appended (§4.1),
only after the leader committed an entry of its term; log compaction and InstallSnapshot in
chunks (§5).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from wanfedtx.raft.admission import ever_member, refusal
from wanfedtx.raft.errors import (
    BootstrapError,
    ConfigChangeError,
    EntryTooLargeError,
    LeadershipTransferError,
    NotLeaderError,
    RaftInvariantError,
)
from wanfedtx.raft.messages import (
    ENTRY_COMMAND,
    ENTRY_CONFIG,
    ENTRY_NOOP,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    decode_voters,
    encode_voters,
)
from wanfedtx.raft.state import (
    CANDIDATE,
    DEFAULT_MAX_ENTRY_BYTES,
    ENTRY_OVERHEAD,
    ERR_LEADERSHIP_LOST,
    ERR_LEADERSHIP_TRANSFER,
    ERR_NOT_LEADER,
    FOLLOWER,
    LEADER,
    PRECANDIDATE,
    V_MALFORMED,
    V_MATCH,
    V_NOT_MEMBER,
    V_NOT_VOTER,
    V_TERM,
    V_TRUNCATE,
    BecameLeader,
    Event,
    HardState,
    LeaderChanged,
    PendingRead,
    Progress,
    ProtocolViolation,
    RaftOptions,
    ReadResult,
    Ready,
    RestoredState,
    Snapshot,
    SteppedDown,
)

__all__ = [
    "CANDIDATE",
    "DEFAULT_MAX_ENTRY_BYTES",
    "ENTRY_OVERHEAD",
    "ERR_LEADERSHIP_LOST",
    "ERR_LEADERSHIP_TRANSFER",
    "ERR_NOT_LEADER",
    "FOLLOWER",
    "LEADER",
    "PRECANDIDATE",
    "V_MALFORMED",
    "V_MATCH",
    "V_NOT_MEMBER",
    "V_NOT_VOTER",
    "V_TERM",
    "V_TRUNCATE",
    "BecameLeader",
    "Event",
    "HardState",
    "LeaderChanged",
    "ProtocolViolation",
    "RaftCore",
    "RaftOptions",
    "ReadResult",
    "Ready",
    "RestoredState",
    "Snapshot",
    "SteppedDown",
]


class RaftCore:
    """One Raft server. See the module docstring for the host contract."""

    def __init__(
        self,
        node_id: str,
        options: RaftOptions,
        rng: random.Random,
        now: float,
        restored: RestoredState | None = None,
    ) -> None:
        restored = restored or RestoredState()
        self.id = node_id
        self.opts = options
        self.rng = rng
        self.now = now
        self.term = restored.term
        self.vote = restored.vote
        self.role = FOLLOWER
        self.leader: str | None = None
        snap = restored.snapshot
        self.snapshot: Snapshot | None = snap
        self.snap_index = snap.index if snap else 0
        self.snap_term = snap.term if snap else 0
        self.log: list[Entry] = []
        for e in restored.entries:
            if e.index <= self.snap_index:
                continue
            if e.index != self.snap_index + len(self.log) + 1:
                raise ValueError(f"restored log is not contiguous at index {e.index}")
            self.log.append(e)
        self.commit = self.snap_index
        self.applied = self.snap_index
        self.stable = self.last_index()  # everything restored is on disk
        # configuration history: (index, voters), latest last
        self._configs: list[tuple[int, frozenset[str]]] = []
        if snap:
            self._configs.append((snap.index, snap.voters))
        for e in self.log:
            if e.kind == ENTRY_CONFIG:
                self._configs.append((e.index, decode_voters(e.data)))
        # persistence bookkeeping
        self._persist_seq = 0
        self._acked_seq = 0
        self._unacked: deque[tuple[int, int, int]] = deque()  # (seq, last_index, last_term)
        self._hs_dirty = False
        self._pending_trunc: int | None = None
        self._pending_entries: list[Entry] = []
        self._pending_snapshot: Snapshot | None = None
        self._restore: Snapshot | None = snap  # the FSM starts from the snapshot
        self._msgs: list[tuple[str, Message]] = []
        self._now_msgs: list[tuple[str, Message]] = []
        self._events: list[Event] = []
        self._reads_out: list[ReadResult] = []
        # election state
        self._votes: set[str] = set()
        self._self_vote_seq = 0
        self._last_leader_contact = -1e18
        self._election_deadline = 0.0
        self._reset_election_timer()
        # leader state
        self._progress: dict[str, Progress] = {}
        self._hb_deadline = 0.0
        self._quorum_deadline = 0.0
        self._hb_seq = 0
        self._reads: list[PendingRead] = []
        self._need_flush = False
        self._transfer_target: str | None = None
        self._transfer_deadline = 0.0
        self._term_start_index = 0  # index of the leader's first entry in its term
        # follower: snapshot being received
        self._incoming: tuple[int, int, bytearray] | None = None
        # a leader outside our configuration that one of our voters follows: (leader, term)
        self._vouched: tuple[str, int] | None = None
        self._stray_at = -1e18  # last AppendEntries refused from outside the configuration

    # -- log helpers ------------------------------------------------------------------------------

    def last_index(self) -> int:
        return self.snap_index + len(self.log)

    def last_term(self) -> int:
        return self.log[-1].term if self.log else self.snap_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; None if unknown (compacted below or beyond end)."""
        if index == self.snap_index:
            return self.snap_term
        if index < self.snap_index or index > self.last_index():
            return None
        return self.log[index - self.snap_index - 1].term

    def entry(self, index: int) -> Entry:
        return self.log[index - self.snap_index - 1]

    @property
    def voters(self) -> frozenset[str]:
        return self._configs[-1][1] if self._configs else frozenset()

    @property
    def config_index(self) -> int:
        return self._configs[-1][0] if self._configs else 0

    def committed_voters(self) -> frozenset[str]:
        for idx, v in reversed(self._configs):
            if idx <= self.commit:
                return v
        return frozenset()

    def _quorum(self, acks: set[str]) -> bool:
        v = self.voters
        return bool(v) and len(acks & v) > len(v) // 2

    def next_deadline(self) -> float:
        if self.role == LEADER:
            d = min(self._hb_deadline, self._quorum_deadline)
            if self._transfer_target is not None:
                d = min(d, self._transfer_deadline)
            return d
        return self._election_deadline

    # -- inputs -----------------------------------------------------------------------------------

    def bootstrap(self, voters: frozenset[str]) -> None:
        """Write the first configuration (index 1, term 1), the same on all servers."""
        if not voters:
            raise BootstrapError("cannot bootstrap with an empty voter set")
        if self.term != 0 or self.last_index() != 0 or self.snapshot is not None:
            raise BootstrapError("bootstrap only works on new clusters (this one has state)")
        self.term = 1
        self._hs_dirty = True
        self._append(Entry(1, 1, ENTRY_CONFIG, encode_voters(voters)))

    def tick(self, now: float) -> None:
        self.now = max(self.now, now)
        now = self.now
        if self.role == LEADER:
            if self._transfer_target is not None and now >= self._transfer_deadline:
                self._transfer_target = None
            if self.opts.check_quorum and now >= self._quorum_deadline:
                self._quorum_deadline = now + self.opts.election_timeout
                recent = {self.id} | {
                    p
                    for p, pr in self._progress.items()
                    if pr.last_ack >= now - self.opts.election_timeout
                }
                if not self._quorum(recent):
                    self._become_follower(self.term, None)
                    return
            if now >= self._hb_deadline:
                self._heartbeat()
            return
        if now >= self._election_deadline:
            self._reset_election_timer()
            if self.id in self.voters:
                if self.opts.pre_vote:
                    self._start_pre_vote()
                else:
                    self._start_election(transfer=False)
            elif now - self._stray_at <= 2 * self.opts.election_timeout:
                self._probe_leader()

    def propose(self, data: bytes, now: float) -> Entry:
        """Append a command as leader; the returned entry's index and term identify the result."""
        self.now = max(self.now, now)
        self._check_leader_accepts()
        if len(data) > self.opts.max_entry_bytes:
            raise EntryTooLargeError(
                f"raft entry of {len(data)} bytes is over the maximum of "
                f"{self.opts.max_entry_bytes} bytes; split the write into smaller ones")
        e = Entry(self.last_index() + 1, self.term, ENTRY_COMMAND, data)
        self._append(e)
        self._need_flush = True
        return e

    def read_index(self, req: Any, now: float) -> None:
        """Start a leader verification; a ``ReadResult`` for ``req`` comes in a later Ready."""
        self.now = max(self.now, now)
        if self.role != LEADER:
            self._reads_out.append(ReadResult(req, None, ERR_NOT_LEADER))
            return
        self._reads.append(PendingRead(req, 0, 0))
        self._need_flush = True

    def change_config(
        self, add: str | None = None, remove: str | None = None, now: float | None = None
    ) -> Entry:
        """Add or remove one voter. Only one change may be uncommitted at a time."""
        if now is not None:
            self.now = max(self.now, now)
        self._check_leader_accepts()
        if (add is None) == (remove is None):
            raise ConfigChangeError("give exactly one server to add or remove")
        if self.config_index > self.commit:
            raise ConfigChangeError(
                "a configuration change is still being committed; retry once it is"
            )
        if self.commit < self._term_start_index:
            raise ConfigChangeError(
                "the new leader has not committed an entry of its term yet; retry shortly"
            )
        voters = set(self.voters)
        if add is not None:
            if add in voters:
                raise ConfigChangeError(f"server {add!r} is already a voter")
            voters.add(add)
        elif remove is not None:
            if remove not in voters:
                raise ConfigChangeError(f"server {remove!r} is not a voter")
            voters.discard(remove)
            if not voters:
                raise ConfigChangeError("cannot remove the last voter")
        e = Entry(self.last_index() + 1, self.term, ENTRY_CONFIG, encode_voters(frozenset(voters)))
        self._append(e)
        self._need_flush = True
        return e

    def transfer_leadership(self, target: str | None = None, now: float | None = None) -> str:
        """Hand leadership to ``target`` (or the most up-to-date voter); returns the target."""
        if now is not None:
            self.now = max(self.now, now)
        if self.role != LEADER:
            raise NotLeaderError(ERR_NOT_LEADER, self.leader)
        if self._transfer_target is not None:
            raise LeadershipTransferError(ERR_LEADERSHIP_TRANSFER)
        peers = [p for p in self.voters if p != self.id]
        if target is None:
            if not peers:
                raise LeadershipTransferError("no other voter to transfer leadership to")
            target = max(sorted(peers), key=lambda p: self._progress[p].match)
        elif target not in peers:
            raise LeadershipTransferError(f"cannot transfer leadership to {target!r}: not a voter")
        self._transfer_target = target
        self._transfer_deadline = self.now + self.opts.election_timeout
        pr = self._progress[target]
        if pr.match == self.last_index():
            self._send(target, TimeoutNow(self.id, self.term), now=True)
        else:
            self._send_append(target)
        return target

    @property
    def snapshot_index(self) -> int:
        """The index the latest snapshot covers (0 without one); >= ``snap_index``."""
        return self.snapshot.index if self.snapshot is not None else 0

    def compact(self, index: int, data: bytes, trailing: int = 0) -> Snapshot:
        """The FSM state ``data`` covers entries up to ``index`` (<= applied): take it as the
        snapshot and drop the log prefix, keeping up to ``trailing`` entries before ``index`` in
        memory so followers slightly behind still get entries instead of the snapshot.

        ``snap_index`` is the log base (the index before the first entry held); it may be below
        the snapshot's index by up to ``trailing``. The host must have stored the returned
        snapshot durably before dropping its log segments.
        """
        if index > self.applied or index <= self.snapshot_index or index <= self.snap_index:
            raise ValueError(
                f"cannot compact to {index}: must be in "
                f"({max(self.snapshot_index, self.snap_index)}, applied={self.applied}]"
            )
        term = self.term_at(index)
        if term is None:
            raise RaftInvariantError(f"cannot compact to {index}: its term is unknown")

        def voters_at(i: int) -> frozenset[str]:
            out: frozenset[str] = frozenset()
            for idx, v in self._configs:
                if idx <= i:
                    out = v
            return out

        snap = Snapshot(index, term, voters_at(index), data)
        base = max(self.snap_index, index - max(0, trailing))
        base_term = self.term_at(base)
        if base_term is None:
            raise RaftInvariantError(f"cannot keep the log from {base}: its term is unknown")
        base_voters = voters_at(base)
        self.log = self.log[base - self.snap_index :]
        self.snap_index, self.snap_term, self.snapshot = base, base_term, snap
        keep = [c for c in self._configs if c[0] > base]
        self._configs = [(base, base_voters), *keep]
        return snap

    def persisted(self, seq: int) -> None:
        """The host made everything up to persistence token ``seq`` durable."""
        if seq <= self._acked_seq:
            return
        self._acked_seq = seq
        while self._unacked and self._unacked[0][0] <= seq:
            _, idx, t = self._unacked.popleft()
            if self.term_at(idx) == t and idx > self.stable:
                self.stable = idx
        if self.role == CANDIDATE and 0 < self._self_vote_seq <= seq:
            self._self_vote_seq = 0
            self._votes.add(self.id)
            if self._quorum(self._votes):
                self._become_leader()
        if self.role == LEADER:
            self._maybe_commit()

    def receive(self, msg: Message, now: float) -> None:
        """Handle one message. A message its sender may not send (see ``_refusal``) changes
        nothing: not the term, the vote, the leader nor the log; it becomes a
        ``ProtocolViolation`` event."""
        self.now = max(self.now, now)
        refusal = self._refusal(msg)
        if refusal is not None:
            self._events.append(ProtocolViolation(msg.src, refusal[0], refusal[1]))
            return
        if msg.term > self.term:
            if isinstance(msg, RequestVote):
                pass  # handled below (pre-vote never changes our term; stickiness)
            elif isinstance(msg, RequestVoteResponse) and msg.pre_vote and msg.granted:
                pass
            elif isinstance(msg, AppendEntries | InstallSnapshot):
                self._become_follower(msg.term, msg.src)
            else:
                self._become_follower(msg.term, None)
        if isinstance(msg, RequestVote):
            self._on_request_vote(msg)
        elif isinstance(msg, RequestVoteResponse):
            self._on_vote_response(msg)
        elif isinstance(msg, AppendEntries):
            self._on_append(msg)
        elif isinstance(msg, AppendEntriesResponse):
            self._on_append_response(msg)
        elif isinstance(msg, InstallSnapshot):
            self._on_install_snapshot(msg)
        elif isinstance(msg, InstallSnapshotResponse):
            self._on_snapshot_response(msg)
        elif isinstance(msg, TimeoutNow):
            if msg.term == self.term and self.role == FOLLOWER and self.id in self.voters:
                self._start_election(transfer=True)

    # -- admission --------------------------------------------------------------------------------

    def _ever_member(self) -> bool:
        return ever_member(self)

    def _refusal(self, msg: Message) -> tuple[str, str] | None:
        return refusal(self, msg)

    # -- output -----------------------------------------------------------------------------------

    def take_ready(self) -> Ready:
        if self.role == LEADER and self._need_flush:
            self._need_flush = False
            self._start_read_round()
            for p in self._progress:
                self._send_append(p)
        r = Ready()
        if self._hs_dirty:
            r.hard_state = HardState(self.term, self.vote)
            self._hs_dirty = False
        r.snapshot, self._pending_snapshot = self._pending_snapshot, None
        r.truncate_from, self._pending_trunc = self._pending_trunc, None
        r.entries, self._pending_entries = self._pending_entries, []
        if r.hard_state or r.snapshot or r.truncate_from is not None or r.entries:
            self._persist_seq += 1
            r.seq = self._persist_seq
            if r.entries:
                last = r.entries[-1]
                self._unacked.append((r.seq, last.index, last.term))
            elif r.snapshot:
                self._unacked.append((r.seq, r.snapshot.index, r.snapshot.term))
            if r.hard_state and self.role == CANDIDATE and self._self_vote_seq == -1:
                self._self_vote_seq = r.seq
        r.wait_seq = self._persist_seq
        r.messages, self._msgs = self._msgs, []
        r.send_now, self._now_msgs = self._now_msgs, []
        r.restore, self._restore = self._restore, None
        target = min(self.commit, self.stable)
        if target > self.applied:
            r.apply = self.log[self.applied - self.snap_index : target - self.snap_index]
            self.applied = target
        r.reads, self._reads_out = self._reads_out, []
        r.events, self._events = self._events, []
        return r

    # -- roles ------------------------------------------------------------------------------------

    def _reset_election_timer(self) -> None:
        e = self.opts.election_timeout
        self._election_deadline = self.now + e + self.rng.random() * e

    def _set_leader(self, leader: str | None) -> None:
        if leader != self.leader:
            self.leader = leader
            self._events.append(LeaderChanged(leader, self.term))

    def _become_follower(self, term: int, leader: str | None) -> None:
        if term > self.term:
            self.term = term
            self.vote = None
            self._hs_dirty = True
        was_leader = self.role == LEADER
        self.role = FOLLOWER
        self._votes = set()
        self._self_vote_seq = 0
        if was_leader:
            self._progress = {}
            self._transfer_target = None
            for rd in self._reads:
                self._reads_out.append(ReadResult(rd.req, None, ERR_LEADERSHIP_LOST))
            self._reads = []
            self._events.append(SteppedDown(self.term))
        self._set_leader(leader)
        if leader is not None:
            self._last_leader_contact = self.now
        self._reset_election_timer()

    def _log_up_to_date(self, last_index: int, last_term: int) -> bool:
        return (last_term, last_index) >= (self.last_term(), self.last_index())

    def _in_lease(self) -> bool:
        if self.role == LEADER:
            return True
        return (
            self.leader is not None
            and self.now - self._last_leader_contact < self.opts.election_timeout
        )

    def _start_pre_vote(self) -> None:
        self.role = PRECANDIDATE
        self._set_leader(None)
        self._votes = {self.id}
        if self._quorum(self._votes):
            self._start_election(transfer=False)
            return
        for p in sorted(self.voters - {self.id}):
            self._send(
                p,
                RequestVote(
                    self.id, self.term + 1, self.last_index(), self.last_term(), pre_vote=True
                ),
            )

    def _probe_leader(self) -> None:
        """A non-voter that a server outside its configuration tries to lead asks its voters
        who leads (a pre-vote request that cannot make it a candidate); a voter's answer
        naming that server lets it follow (``_vouched``)."""
        for p in sorted(self.voters - {self.id}):
            self._send(p, RequestVote(self.id, self.term + 1, self.last_index(),
                                      self.last_term(), pre_vote=True))

    def _start_election(self, transfer: bool) -> None:
        self.role = CANDIDATE
        self.term += 1
        self.vote = self.id
        self._hs_dirty = True
        self._set_leader(None)
        self._votes = set()
        self._self_vote_seq = -1  # set to the Ready's seq; our vote counts once it is durable
        self._reset_election_timer()
        for p in sorted(self.voters - {self.id}):
            self._send(
                p,
                RequestVote(
                    self.id, self.term, self.last_index(), self.last_term(), transfer=transfer
                ),
            )

    def _become_leader(self) -> None:
        self.role = LEADER
        self._set_leader(self.id)
        self._events.append(BecameLeader(self.term))
        self._progress = {
            p: Progress(next=self.last_index() + 1, last_ack=self.now, last_progress=self.now)
            for p in self.voters
            if p != self.id
        }
        self._reads = []
        self._transfer_target = None
        self._hb_deadline = self.now + self.opts.heartbeat_interval
        self._quorum_deadline = self.now + self.opts.election_timeout
        noop = Entry(self.last_index() + 1, self.term, ENTRY_NOOP, b"")
        self._term_start_index = noop.index
        self._append(noop)
        self._need_flush = True

    # -- log mutation -----------------------------------------------------------------------------

    def _append(self, e: Entry) -> None:
        if e.index != self.last_index() + 1:
            raise RaftInvariantError(
                f"{self.id}: entry {e.index} does not follow the last index {self.last_index()}")
        self.log.append(e)
        self._pending_entries.append(e)
        if e.kind == ENTRY_CONFIG:
            self._configs.append((e.index, decode_voters(e.data)))
            if self.role == LEADER:
                self._sync_progress()

    def _truncate(self, index: int) -> None:
        """Drop entries >= index (uncommitted ones only)."""
        if index <= self.commit:
            raise RaftInvariantError(
                f"{self.id}: refusing to truncate committed entry {index} (commit {self.commit})")
        self.log = self.log[: index - self.snap_index - 1]
        self._pending_entries = [e for e in self._pending_entries if e.index < index]
        self._pending_trunc = (
            index if self._pending_trunc is None else min(self._pending_trunc, index)
        )
        self.stable = min(self.stable, index - 1)
        while self._configs and self._configs[-1][0] >= index:
            self._configs.pop()

    def _sync_progress(self) -> None:
        for p in self.voters:
            if p != self.id and p not in self._progress:
                self._progress[p] = Progress(
                    next=self.last_index(), last_ack=self.now, last_progress=self.now
                )
        for p in list(self._progress):
            if p not in self.voters:
                del self._progress[p]

    # -- sending ----------------------------------------------------------------------------------

    def _send(self, dst: str, msg: Message, now: bool = False) -> None:
        (self._now_msgs if now else self._msgs).append((dst, msg))

    def _heartbeat(self) -> None:
        self._hb_deadline = self.now + self.opts.heartbeat_interval
        for p, pr in self._progress.items():
            if (
                pr.state == "replicate"
                and pr.inflight
                and (self.now - pr.last_progress > 2 * self.opts.heartbeat_interval)
            ):
                pr.state, pr.next = "probe", pr.match + 1
                pr.inflight.clear()
            pr.paused = False
            if pr.state == "replicate":
                self._send_heartbeat(p, pr)
            self._send_append(p, force=True)

    def _send_heartbeat(self, p: str, pr: Progress) -> None:
        prev = max(pr.match, self.snap_index)
        t = self.term_at(prev)
        if t is None:  # cannot happen with match <= last_index; probe again instead
            pr.state, pr.next, pr.paused = "probe", self.last_index() + 1, False
            pr.inflight.clear()
            return
        self._send(
            p,
            AppendEntries(self.id, self.term, prev, t, (), min(self.commit, prev), self._hb_seq),
            now=True,
        )

    def _send_append(self, p: str, force: bool = False) -> None:
        pr = self._progress.get(p)
        if pr is None or self.role != LEADER:
            return
        if pr.state == "snapshot":
            if force:
                self._send_snapshot_chunk(p, pr)
            return
        if pr.next <= self.snap_index:
            pr.state, pr.snap_index, pr.snap_offset = "snapshot", self.snapshot_index, 0
            pr.inflight.clear()
            self._send_snapshot_chunk(p, pr)
            return
        if pr.state == "probe":
            if pr.paused and not force:
                return
            self._send_entries(p, pr)
            pr.paused = True
            return
        # replicate: pipeline batches while the window allows
        sent = False
        while len(pr.inflight) < self.opts.max_inflight and pr.next <= self.last_index():
            self._send_entries(p, pr)
            sent = True
        if force and not sent:
            pass  # the heartbeat was already sent by _heartbeat

    def _send_entries(self, p: str, pr: Progress) -> None:
        prev = pr.next - 1
        prev_term = self.term_at(prev)
        if prev_term is None:  # next beyond our log: restart the probe from our end
            pr.next = self.last_index() + 1
            prev, prev_term = self.last_index(), self.last_term()
        lo = pr.next - self.snap_index - 1
        batch = self._batch(lo)
        self._send(
            p,
            AppendEntries(self.id, self.term, prev, prev_term, batch, self.commit, self._hb_seq),
            now=True,
        )
        if batch and pr.state == "replicate":
            pr.next = batch[-1].index + 1
            pr.inflight.append(batch[-1].index)

    def _batch(self, lo: int) -> tuple[Entry, ...]:
        """Entries from log position ``lo``, capped by count and by bytes (at least one)."""
        out: list[Entry] = []
        size = 0
        for e in self.log[lo : lo + self.opts.max_entries_per_message]:
            size += len(e.data) + ENTRY_OVERHEAD
            if out and size > self.opts.max_append_bytes:
                break
            out.append(e)
        return tuple(out)

    def _send_snapshot_chunk(self, p: str, pr: Progress) -> None:
        snap = self.snapshot
        if snap is None:  # no snapshot to send (cannot happen with next <= snap_index)
            pr.state, pr.paused = "probe", False
            return
        if pr.snap_index != snap.index:
            pr.snap_index, pr.snap_offset = snap.index, 0
        off = pr.snap_offset
        chunk = snap.data[off : off + self.opts.snapshot_chunk_size]
        done = off + len(chunk) >= len(snap.data)
        self._send(
            p,
            InstallSnapshot(
                self.id,
                self.term,
                snap.index,
                snap.term,
                tuple(sorted(snap.voters)),
                off,
                chunk,
                done,
                self._hb_seq,
            ),
            now=True,
        )

    # -- handlers ---------------------------------------------------------------------------------

    def _on_request_vote(self, m: RequestVote) -> None:
        up_to_date = self._log_up_to_date(m.last_log_index, m.last_log_term)
        if m.pre_vote:
            grant = m.term > self.term and up_to_date and (m.transfer or not self._in_lease())
            self._send(
                m.src,
                RequestVoteResponse(self.id, m.term if grant else self.term, grant, pre_vote=True,
                                    leader=self.leader or ""),
            )
            return
        if m.term > self.term:
            if self._in_lease() and not m.transfer:
                self._send(m.src, RequestVoteResponse(self.id, self.term, False,
                                                      leader=self.leader or ""))
                return
            self._become_follower(m.term, None)
        grant = m.term == self.term and self.vote in (None, m.src) and up_to_date
        if grant:
            if self.vote != m.src:
                self.vote = m.src
                self._hs_dirty = True
            self._reset_election_timer()
        self._send(m.src, RequestVoteResponse(self.id, self.term, grant,
                                              leader=self.leader or ""))

    def _on_vote_response(self, m: RequestVoteResponse) -> None:
        if (m.leader and m.leader != self.id and m.leader not in self.voters
                and m.src in self.voters and m.term >= self.term):
            self._vouched = (m.leader, m.term)  # a voter follows it: we missed its addition
        if m.pre_vote:
            if self.role != PRECANDIDATE:
                return
            if m.granted and m.term == self.term + 1:
                self._votes.add(m.src)
                if self._quorum(self._votes):
                    self._start_election(transfer=False)
            elif not m.granted and m.term > self.term:
                self._become_follower(m.term, None)
            return
        if self.role != CANDIDATE or m.term != self.term or not m.granted:
            return
        self._votes.add(m.src)
        if self._quorum(self._votes):
            self._become_leader()

    def _on_append(self, m: AppendEntries) -> None:
        if m.term < self.term:
            self._send(
                m.src, AppendEntriesResponse(self.id, self.term, False, m.prev_index, 0, m.seq)
            )
            return
        if self.role != FOLLOWER:
            self._become_follower(m.term, m.src)
        self._set_leader(m.src)
        self._last_leader_contact = self.now
        self._reset_election_timer()
        prev, prev_term, entries = m.prev_index, m.prev_term, m.entries
        match = prev + len(entries)
        if prev < self.snap_index:
            entries = tuple(e for e in entries if e.index > self.snap_index)
            prev, prev_term = self.snap_index, self.snap_term
            if match < prev:  # everything in the message is already in our snapshot
                self._reply_append(m, True, match)
                return
        local = self.term_at(prev)
        if local is None:
            self._reply_append(m, False, 0, hint=self.last_index())
            return
        if local != prev_term:
            first = prev
            while first - 1 > self.snap_index and self.term_at(first - 1) == local:
                first -= 1
            self._reply_append(m, False, 0, hint=max(self.commit, first - 1))
            return
        for i, e in enumerate(entries):
            t = self.term_at(e.index)
            if t == e.term:
                continue
            if t is not None:
                self._truncate(e.index)
            for e2 in entries[i:]:
                self._append(e2)
            break
        new_commit = min(m.leader_commit, match)
        if new_commit > self.commit:
            self.commit = new_commit
        self._reply_append(m, True, match)

    def _reply_append(self, m: AppendEntries, ok: bool, match: int, hint: int = 0) -> None:
        self._send(
            m.src,
            AppendEntriesResponse(
                self.id, self.term, ok, match if ok else m.prev_index, hint, m.seq
            ),
        )

    def _acked(self, m: AppendEntriesResponse | InstallSnapshotResponse) -> Progress | None:
        """Record a current-term reply from a follower; its progress, or None if it is stale."""
        if self.role != LEADER or m.term != self.term:
            return None
        pr = self._progress.get(m.src)
        if pr is None:
            return None
        pr.last_ack = self.now
        pr.acked_seq = max(pr.acked_seq, m.seq)
        return pr

    def _on_append_response(self, m: AppendEntriesResponse) -> None:
        pr = self._acked(m)
        if pr is None:
            return
        if m.success:
            if m.match_index > pr.match:
                pr.match = m.match_index
                pr.last_progress = self.now
            pr.next = max(pr.next, pr.match + 1)
            while pr.inflight and pr.inflight[0] <= pr.match:
                pr.inflight.popleft()
            if pr.state == "probe":
                pr.state, pr.paused = "replicate", False
                pr.inflight.clear()
                pr.next = pr.match + 1
            self._maybe_commit()
            if m.src == self._transfer_target and pr.match == self.last_index():
                self._send(m.src, TimeoutNow(self.id, self.term), now=True)
        else:
            if m.match_index <= pr.match or pr.state == "snapshot":
                self._check_reads()
                return  # stale rejection
            pr.next = max(pr.match + 1, min(pr.next - 1, m.hint + 1))
            pr.state, pr.paused = "probe", False
            pr.inflight.clear()
        self._check_reads()
        self._send_append(m.src)

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        if m.term < self.term:
            self._send(
                m.src, InstallSnapshotResponse(self.id, self.term, m.last_index, 0, False, m.seq)
            )
            return
        if self.role != FOLLOWER:
            self._become_follower(m.term, m.src)
        self._set_leader(m.src)
        self._last_leader_contact = self.now
        self._reset_election_timer()
        if m.last_index <= self.commit:
            self._incoming = None
            self._send(
                m.src, InstallSnapshotResponse(self.id, self.term, m.last_index, 0, True, m.seq)
            )
            return
        inc = self._incoming
        if m.offset == 0:
            inc = (m.last_index, m.last_term, bytearray())
        if (
            inc is None
            or inc[0] != m.last_index
            or inc[1] != m.last_term
            or m.offset != len(inc[2])
        ):
            want = len(inc[2]) if inc and inc[0] == m.last_index and inc[1] == m.last_term else 0
            self._send(
                m.src, InstallSnapshotResponse(self.id, self.term, m.last_index, want, False, m.seq)
            )
            return
        inc[2].extend(m.data)
        self._incoming = inc
        if not m.done:
            self._send(
                m.src,
                InstallSnapshotResponse(
                    self.id, self.term, m.last_index, len(inc[2]), False, m.seq
                ),
            )
            return
        self._incoming = None
        snap = Snapshot(m.last_index, m.last_term, frozenset(m.voters), bytes(inc[2]))
        if self.term_at(snap.index) == snap.term:
            self.log = self.log[snap.index - self.snap_index :]  # keep the matching suffix
        else:
            if self.last_index() > snap.index or self._pending_entries:
                self._pending_trunc = snap.index + 1
            self.log = []
            self._pending_entries = []
        self._pending_entries = [e for e in self._pending_entries if e.index > snap.index]
        self.snap_index, self.snap_term, self.snapshot = snap.index, snap.term, snap
        self._pending_snapshot = snap
        self._configs = [(snap.index, snap.voters)] + [
            (i, v) for i, v in self._configs if i > snap.index and i <= self.last_index()
        ]
        self.stable = min(self.stable, self.last_index())
        self.commit = max(self.commit, snap.index)
        if snap.index > self.applied:
            self.applied = snap.index
            self._restore = snap
        self._send(
            m.src,
            InstallSnapshotResponse(self.id, self.term, m.last_index, len(inc[2]), True, m.seq),
        )

    def _on_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        pr = self._acked(m)
        if pr is None:
            return
        self._check_reads()
        if pr.state != "snapshot" or m.last_index != pr.snap_index:
            return
        if m.done:
            pr.match = max(pr.match, m.last_index)
            pr.next = pr.match + 1
            pr.state, pr.paused = "probe", False
            pr.last_progress = self.now
            self._maybe_commit()
            self._send_append(m.src)
        else:
            pr.snap_offset = m.next_offset
            self._send_snapshot_chunk(m.src, pr)

    # -- commit and reads -------------------------------------------------------------------------

    def _maybe_commit(self) -> None:
        voters = self.voters
        matches = [pr.match for p, pr in self._progress.items() if p in voters]
        if self.id in voters:
            matches.append(self.stable)
        if not matches:
            return
        matches.sort(reverse=True)
        n = matches[len(voters) // 2]
        if n > self.commit and self.term_at(n) == self.term:
            self.commit = n
            self._check_reads()
            if self.id not in self.voters and self.config_index <= self.commit:
                self._become_follower(self.term, None)  # removed ourselves: step down (§4.2.2)
                self._election_deadline = float("inf")

    def _start_read_round(self) -> None:
        if not any(rd.seq == 0 for rd in self._reads):
            return
        if self.commit < self._term_start_index:
            return  # wait until an entry of our term is committed (§6.4 step 1)
        self._hb_seq += 1
        for rd in self._reads:
            if rd.seq == 0:
                rd.seq, rd.index = self._hb_seq, self.commit
        for p, pr in self._progress.items():
            self._send_heartbeat(p, pr)
        self._check_reads()

    def _check_reads(self) -> None:
        if not self._reads:
            return
        if any(rd.seq == 0 for rd in self._reads) and self.commit >= self._term_start_index:
            self._need_flush = True
        done = 0
        for rd in self._reads:
            if rd.seq == 0:
                break
            acks = {self.id} | {p for p, pr in self._progress.items() if pr.acked_seq >= rd.seq}
            if not self._quorum(acks):
                break
            self._reads_out.append(ReadResult(rd.req, rd.index))
            done += 1
        del self._reads[:done]

    def _check_leader_accepts(self) -> None:
        if self.role != LEADER:
            raise NotLeaderError(ERR_NOT_LEADER, self.leader)
        if self._transfer_target is not None:
            raise LeadershipTransferError(ERR_LEADERSHIP_TRANSFER)
