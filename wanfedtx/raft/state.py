# -*- test-case-name: tests.unit.raft -*-
"""The raft core's data types and constants: options, persisted state, Ready, events, and the
reasons of protocol violations. Re-exported by ``wanfedtx.raft.core``."""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs

from wanfedtx.raft.messages import Entry, Message

FOLLOWER = "follower"
PRECANDIDATE = "pre-candidate"
CANDIDATE = "candidate"
LEADER = "leader"

# Reference (hashicorp/raft) error strings.
ERR_NOT_LEADER = "node is not the leader"
ERR_LEADERSHIP_TRANSFER = "leadership transfer in progress"
ERR_LEADERSHIP_LOST = "leadership lost while committing log"

DEFAULT_MAX_ENTRY_BYTES = 4 * 1024 * 1024
ENTRY_OVERHEAD = 32  # msgpack framing of one entry ([index, term, kind, bin]) at most

# ProtocolViolation reasons (bounded set: they label a metric).
V_NOT_MEMBER = "not-a-member"  # AppendEntries/InstallSnapshot/TimeoutNow from outside the config
V_NOT_VOTER = "not-a-voter"  # RequestVote from outside the configuration
V_TERM = "term-from-non-member"  # a higher term in a message from outside the configuration
V_TRUNCATE = "truncate-committed"  # AppendEntries conflicting with a committed entry
V_MATCH = "match-beyond-log"  # AppendEntriesResponse claiming entries the leader does not have
V_MALFORMED = "malformed-append"  # entries not contiguous after prev, or terms out of order


@attrs.define
class RaftOptions:
    """Timing and flow-control knobs; times are in the same unit as ``now`` (seconds)."""

    election_timeout: float = 1.0
    heartbeat_interval: float = 0.1
    max_entries_per_message: int = 256
    max_inflight: int = 16
    snapshot_chunk_size: int = 256 * 1024
    pre_vote: bool = True
    check_quorum: bool = True
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES  # ``propose`` refuses larger commands
    max_append_bytes: int = DEFAULT_MAX_ENTRY_BYTES  # AppendEntries batch cap (>= 1 entry)

    @classmethod
    def for_multiplier(cls, multiplier: int, **kwargs: Any) -> RaftOptions:
        """Options with Consul's ``performance.raft_multiplier`` scaling: the election timeout
        is ``multiplier`` seconds (followers wait that long, randomized up to twice it, without
        a leader before they campaign) and the leader's heartbeat interval a tenth of it, as
        hashicorp/raft's 1 s heartbeat/election timeouts (heartbeats at timeout/10) scaled by
        the multiplier. The leader steps down after an election timeout without a quorum."""
        if multiplier < 1:
            raise ValueError(f"raft multiplier must be >= 1, not {multiplier}")
        return cls(election_timeout=1.0 * multiplier, heartbeat_interval=0.1 * multiplier,
                   **kwargs)


@attrs.frozen
class Snapshot:
    """An FSM snapshot covering the log up to ``index`` (whose term is ``term``)."""

    index: int
    term: int
    voters: frozenset[str]
    data: bytes


@attrs.frozen
class HardState:
    term: int
    vote: str | None


@attrs.frozen
class RestoredState:
    """What the host read back from disk at start."""

    term: int = 0
    vote: str | None = None
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()


@attrs.frozen
class LeaderChanged:
    leader: str | None
    term: int


@attrs.frozen
class BecameLeader:
    term: int


@attrs.frozen
class SteppedDown:
    term: int


@attrs.frozen
class ProtocolViolation:
    """A message refused because its sender may not send it (it changed nothing)."""

    sender: str
    reason: str  # one of the V_* constants
    detail: str


Event = LeaderChanged | BecameLeader | SteppedDown | ProtocolViolation


@attrs.frozen
class ReadResult:
    """Result of ``read_index``: the index to wait for, or an error string."""

    req: Any
    index: int | None
    error: str | None = None


@attrs.define
class Ready:
    seq: int = 0  # persistence token of this Ready (0: nothing to persist)
    wait_seq: int = 0  # send ``messages`` once every token <= wait_seq is acknowledged
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    truncate_from: int | None = None
    entries: list[Entry] = attrs.Factory(list)
    messages: list[tuple[str, Message]] = attrs.Factory(list)
    send_now: list[tuple[str, Message]] = attrs.Factory(list)
    restore: Snapshot | None = None
    apply: list[Entry] = attrs.Factory(list)
    reads: list[ReadResult] = attrs.Factory(list)
    events: list[Event] = attrs.Factory(list)

    @property
    def needs_persist(self) -> bool:
        return self.seq != 0

    def empty(self) -> bool:
        return not (
            self.seq
            or self.messages
            or self.send_now
            or self.restore
            or self.apply
            or self.reads
            or self.events
        )


@attrs.define
class Progress:
    next: int
    match: int = 0
    state: str = "probe"  # probe | replicate | snapshot
    paused: bool = False  # probe: one message outstanding until a response or a heartbeat
    inflight: deque[int] = attrs.Factory(deque)  # last index of each outstanding append
    last_ack: float = -1e18  # time of the last response in this term
    last_progress: float = -1e18
    acked_seq: int = 0
    snap_index: int = 0
    snap_offset: int = 0


@attrs.define
class PendingRead:
    req: Any
    seq: int  # 0 until a heartbeat round is started for it
    index: int
