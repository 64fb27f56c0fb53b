# -*- test-case-name: tests.unit.agent.test_agent_stats -*-
"""The ``Stats`` sections of ``/v1/agent/self`` (what ``wanfed info`` prints) beyond ``agent``
and ``build``: ``consul``, ``raft`` (servers with raft), ``runtime``, ``serf_lan`` and
``serf_wan`` (servers), with Consul's keys; every value is a string, as Consul's."""

from __future__ import annotations

import os
import platform
import sys
import threading
from typing import Any

from wanfedtx.gossip.serf.messages import MemberStatus

_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "i686": "386", "i386": "386", "armv7l": "arm"}


def runtime_stats() -> dict[str, str]:
    """Consul's ``runtime`` section for this process (Python's in Go's names)."""
    cpus = str(os.cpu_count() or 1)
    return {
        "os": sys.platform.rstrip("0123456789") or sys.platform,
        "arch": _GO_ARCH.get(platform.machine().lower(), platform.machine().lower()),
        "version": f"python{platform.python_version()}",
        "max_procs": cpus,
        "goroutines": str(threading.active_count()),
        "cpu_count": cpus,
    }


def serf_stats(serf: Any) -> dict[str, str]:
    """serf's ``Stats()`` of a pool (``serf_lan``, ``serf_wan``)."""
    members = list(serf.members.values())
    statuses = [int(m.status) for m in members]
    return {
        "members": str(len(members)),
        "failed": str(statuses.count(MemberStatus.FAILED)),
        "left": str(statuses.count(MemberStatus.LEFT)),
        "health_score": str(serf.memberlist.health_score()),
        "member_time": str(serf.member_clock.time()),
        "event_time": str(serf.event_clock.time()),
        "query_time": str(serf.query_clock.time()),
        "intent_queue": str(len(serf.broadcasts)),
        "event_queue": str(len(serf.event_broadcasts)),
        "query_queue": str(len(serf.query_broadcasts)),
        "encrypted": "true" if serf.config.memberlist.encryption_enabled() else "false",
        "coordinate_resets": "0",
    }


def extra_stats(agent: Any) -> dict[str, dict[str, str]]:
    """``consul``, ``raft``, ``runtime``, ``serf_lan``, ``serf_wan`` of a running ``Agent``."""
    rt = agent.config
    out: dict[str, dict[str, str]] = {"runtime": runtime_stats()}
    router = agent.gossip.router
    consul = {"server": "true" if rt.server_mode else "false", "acl": "disabled"}
    if rt.server_mode and agent.catalog is not None:
        consensus = agent.catalog.consensus
        consul.update(
            leader="true" if consensus.is_leader() else "false",
            leader_addr=consensus.leader_address() or "",
            bootstrap="true" if rt.bootstrap or rt.dev_mode else "false",
            known_datacenters=str(len(router.datacenters())),
        )
    elif getattr(agent, "client", None) is not None:
        consul["known_servers"] = str(agent.client.known_servers())
    else:
        consul["known_servers"] = str(len(router.lan.servers(rt.datacenter)))
    out["consul"] = consul
    if agent.raft is not None and agent.raft.running:
        out["raft"] = agent.raft.stats()
    pools = (("serf_lan", agent.gossip.lan_serf), ("serf_wan", agent.gossip.wan_serf))
    for section, getter in pools:
        serf = getter()
        if serf is not None:
            out[section] = serf_stats(serf)
    return out
