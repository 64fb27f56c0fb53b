# -*- test-case-name: tests.unit.raft.test_raft_core,tests.unit.raft.test_raft_core_safety -*-
"""Leader election of the sans-IO Raft core: pre-vote, candidacy, votes and becoming leader.

Randomized timeouts with pre-vote (thesis §9.6), leader stickiness (§4.2.3) and the probe a
non-voter sends when a server outside its configuration tries to lead it. A mixin over
``CoreBase``; ``RaftCore`` (``raft/core.py``) is the class to use.
"""

from __future__ import annotations

from wanfedtx.raft.core_base import CoreBase
from wanfedtx.raft.messages import (
    ENTRY_NOOP,
    Entry,
    RequestVote,
    RequestVoteResponse,
)
from wanfedtx.raft.state import (
    CANDIDATE,
    LEADER,
    PRECANDIDATE,
    BecameLeader,
    Progress,
)


class Election(CoreBase):
    """Election: pre-vote, RequestVote handling, votes counted, becoming leader."""

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
