# -*- test-case-name: tests.unit.raft.test_raft_core,tests.unit.raft.test_raft_core_safety -*-
"""The follower side of the sans-IO Raft core: AppendEntries and InstallSnapshot received.

Log matching and truncation of conflicting uncommitted entries (thesis §3.5), snapshots
received in chunks and installed (§5). A mixin over ``CoreBase``; ``RaftCore``
(``raft/core.py``) is the class to use.
"""

from __future__ import annotations

from wanfedtx.raft.core_base import CoreBase
from wanfedtx.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
)
from wanfedtx.raft.state import (
    FOLLOWER,
    Snapshot,
)


class Follower(CoreBase):
    """Follower: appends and snapshots from the leader, and the replies to them."""

    def _on_append(self, m: AppendEntries) -> None:
        if m.term < self.term:
            self._send(
                m.src, AppendEntriesResponse(self.id, self.term, False, m.prev_index, 0, m.seq)
            )
            return
        self._heard_from_leader(m.term, m.src)
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

    def _heard_from_leader(self, term: int, leader: str) -> None:
        """A current-term leader spoke: follow it and restart the election timer."""
        if self.role != FOLLOWER:
            self._become_follower(term, leader)
        self._set_leader(leader)
        self._last_leader_contact = self.now
        self._reset_election_timer()

    def _reply_append(self, m: AppendEntries, ok: bool, match: int, hint: int = 0) -> None:
        self._send(
            m.src,
            AppendEntriesResponse(
                self.id, self.term, ok, match if ok else m.prev_index, hint, m.seq
            ),
        )

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        if m.term < self.term:
            self._send(
                m.src, InstallSnapshotResponse(self.id, self.term, m.last_index, 0, False, m.seq)
            )
            return
        self._heard_from_leader(m.term, m.src)
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
