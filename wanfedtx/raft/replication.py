# -*- test-case-name: tests.unit.raft.test_raft_core,tests.unit.raft.test_raft_core_safety -*-
"""The leader side of the sans-IO Raft core: replication, commit and read-index rounds.

Heartbeats, per-follower progress (probe / replicate with a pipelined window / snapshot),
batching by count and bytes (thesis §10.2), commit of current-term entries only (§3.6.2) and
read-index leader verification (§6.4). A mixin over ``CoreBase``; ``RaftCore``
(``raft/core.py``) is the class to use.
"""

from __future__ import annotations

from wanfedtx.raft.core_base import CoreBase
from wanfedtx.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
)
from wanfedtx.raft.state import (
    ENTRY_OVERHEAD,
    LEADER,
    Progress,
    ReadResult,
)


class Replication(CoreBase):
    """Leader: replication to followers, their replies, commit and reads."""

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
