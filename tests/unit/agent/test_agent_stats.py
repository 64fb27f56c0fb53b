"""The ``Stats`` sections of ``/v1/agent/self`` built from the agent's parts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from wanfedtx.agent.stats import runtime_stats, serf_stats
from wanfedtx.gossip.serf.messages import MemberStatus


def test_runtime_stats_use_consuls_keys() -> None:
    stats = runtime_stats()
    assert sorted(stats) == ["arch", "cpu_count", "goroutines", "max_procs", "os", "version"]
    assert all(isinstance(v, str) and v for v in stats.values())


def test_serf_stats_count_members_by_status() -> None:
    def clock(t: int) -> Any:
        return SimpleNamespace(time=lambda: t)

    members = {n: SimpleNamespace(status=s) for n, s in
               (("a", MemberStatus.ALIVE), ("b", MemberStatus.FAILED), ("c", MemberStatus.LEFT),
                ("d", MemberStatus.FAILED))}
    serf = SimpleNamespace(
        members=members,
        memberlist=SimpleNamespace(health_score=lambda: 2),
        member_clock=clock(7), event_clock=clock(3), query_clock=clock(1),
        broadcasts=[1], event_broadcasts=[], query_broadcasts=[1, 2],
        config=SimpleNamespace(memberlist=SimpleNamespace(encryption_enabled=lambda: True)),
    )
    assert serf_stats(serf) == {
        "members": "4", "failed": "2", "left": "1", "health_score": "2", "member_time": "7",
        "event_time": "3", "query_time": "1", "intent_queue": "1", "event_queue": "0",
        "query_queue": "2", "encrypted": "true", "coordinate_resets": "0",
    }
