"""Test helpers for real agents: short serf timings (the agent's test-only ``serf_tuning``)."""

from __future__ import annotations

from wanfedtx.gossip.serf import SerfConfig


def fast_serf(cfg: SerfConfig) -> None:
    """Test-only serf timings (the agent's ``serf_tuning`` hook)."""
    cfg.leave_propagate_delay = 0.2
    cfg.broadcast_timeout = 2.0
    cfg.memberlist.push_pull_interval = 2.0
    cfg.memberlist.tcp_timeout = 2.0
