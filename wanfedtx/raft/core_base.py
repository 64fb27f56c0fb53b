# -*- test-case-name: tests.unit.raft.test_raft_core,tests.unit.raft.test_raft_core_safety -*-
"""State and shared helpers of the sans-IO Raft core (see ``wanfedtx.raft.core``).

``CoreBase`` holds one server's whole state (term, vote, log, configurations, persistence
bookkeeping, election and leader state) and the helpers every part of the core uses: log access,
log mutation, queuing a message, leader changes and stepping down. The election, replication and
follower parts are mixins over it (``raft/election.py``, ``raft/replication.py``,
``raft/follower.py``); ``RaftCore`` combines them and adds the inputs and ``take_ready``.
"""

from __future__ import annotations

import random
from collections import deque

from wanfedtx.raft.errors import (
    RaftInvariantError,
)
from wanfedtx.raft.messages import (
    ENTRY_CONFIG,
    Entry,
    Message,
    decode_voters,
)
from wanfedtx.raft.state import (
    ERR_LEADERSHIP_LOST,
    FOLLOWER,
    LEADER,
    Event,
    LeaderChanged,
    PendingRead,
    Progress,
    RaftOptions,
    ReadResult,
    RestoredState,
    Snapshot,
    SteppedDown,
)


class CoreBase:
    """One Raft server's state and shared helpers; ``RaftCore`` is the class to use."""

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
        self._campaign_now_if_alone()
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

    @property
    def snapshot_index(self) -> int:
        """The index the latest snapshot covers (0 without one); >= ``snap_index``."""
        return self.snapshot.index if self.snapshot is not None else 0

    @property
    def last_leader_contact(self) -> float | None:
        """When this node last heard from a leader of its term (None: never)."""
        return self._last_leader_contact if self._last_leader_contact > -1e17 else None

    def follower_acks(self) -> dict[str, float]:
        """A leader's view: when each follower last answered it in this term (answered ones)."""
        return {p: pr.last_ack for p, pr in self._progress.items()
                if p != self.id and pr.last_ack > -1e17}

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

    # -- roles ------------------------------------------------------------------------------------

    def _campaign_now_if_alone(self) -> None:
        """A server that is the only voter of its configuration has no leader to wait for: its
        first election starts at the next tick instead of after an election timeout (which
        ``performance.raft_multiplier`` may stretch to 5-10 s). Later timeouts are the usual."""
        if self.voters == frozenset((self.id,)):
            self._election_deadline = self.now

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
