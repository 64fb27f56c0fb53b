# -*- test-case-name: tests.unit.raft.test_raft_bounds,tests.unit.raft.test_raft_core -*-
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

Layout: ``RaftCore`` (this module: the inputs and ``take_ready``) combines mixins over one state,
``CoreBase`` (``raft/core_base.py``: state, log access and mutation, stepping down), ``Election``
(``raft/election.py``), ``Replication`` (``raft/replication.py``, the leader side: progress,
commit, reads) and ``Follower`` (``raft/follower.py``: appends and snapshots received). It is
still one state machine: the mixins share ``self`` and never do I/O.
"""

from __future__ import annotations

from typing import Any

from wanfedtx.raft.admission import ever_member, refusal
from wanfedtx.raft.core_base import CoreBase
from wanfedtx.raft.election import Election
from wanfedtx.raft.errors import (
    BootstrapError,
    ConfigChangeError,
    EntryTooLargeError,
    LeadershipTransferError,
    NotLeaderError,
    RaftInvariantError,
)
from wanfedtx.raft.follower import Follower
from wanfedtx.raft.messages import (
    ENTRY_COMMAND,
    ENTRY_CONFIG,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    encode_voters,
)
from wanfedtx.raft.replication import Replication
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


class RaftCore(Election, Follower, Replication, CoreBase):
    """One Raft server. See the module docstring for the host contract."""

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
        self._campaign_now_if_alone()

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


    def _check_leader_accepts(self) -> None:
        if self.role != LEADER:
            raise NotLeaderError(ERR_NOT_LEADER, self.leader)
        if self._transfer_target is not None:
            raise LeadershipTransferError(ERR_LEADERSHIP_TRANSFER)
