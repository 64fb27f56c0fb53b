# -*- test-case-name: tests.unit.raft.test_raft_service -*-
"""The raft service's metrics, with Consul's names (``consul_raft_*`` in Prometheus)."""

from __future__ import annotations

from wanfedtx.metrics import Counter, Gauge, Registry, Summary


class RaftMetrics:
    """Every metric ``RaftService`` reports, registered once on ``registry``."""

    def __init__(self, registry: Registry) -> None:
        r = registry
        self.apply: Counter = r.counter("raft.apply", "Commands committed and applied (leader)")
        self.commit_time: Summary = r.summary(
            "raft.commitTime",
            "Time from a leader's proposal to its commit, per commit batch (oldest entry, ms)")
        self.last_contact: Summary = r.summary(
            "raft.leader.lastContact",
            "Time since the leader last heard from each follower, sampled every 500 ms (ms)")
        self.leader: Counter = r.counter("raft.state.leader", "Times this server became leader")
        self.batches: Counter = r.counter("raft.fsync.batches", "Group-commit write batches")
        self.readies: Counter = r.counter("raft.fsync.readies", "Readies persisted")
        self.snapshots: Counter = r.counter("raft.snapshot.taken", "FSM snapshots taken")
        self.term: Gauge = r.gauge("raft.term", "Current raft term")
        self.commit: Gauge = r.gauge("raft.commit_index", "Highest committed log index")
        self.applied: Gauge = r.gauge("raft.applied_index", "Highest index applied to the FSM")
        self.violations: Counter = r.counter(
            "raft.protocol_violations",
            "Raft messages refused because their sender may not send them", ("reason",))
