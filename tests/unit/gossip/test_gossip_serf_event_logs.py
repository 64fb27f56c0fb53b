"""serf logs each member event with serf's own line (``serf: EventMemberJoin: s1.dc1 127.0.0.1``),
the lines Consul operators grep for."""

from __future__ import annotations

from typing import Any

from test_gossip_serf import make
from twisted.logger import formatEvent

from wanfedtx.gossip.serf import MemberStatus
from wanfedtx.gossip.simnet import run_for


def _lines(logged: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in logged
            if str(e.get("log_format", "")).startswith("serf: Event")]


def test_join_fail_forced_leave_and_forced_reap_are_logged(logged: list[dict[str, Any]]) -> None:
    clock, net, nodes, _ = make(3, reconnect_interval=1e6, reconnect_timeout=600)
    assert "serf: EventMemberJoin: s2.dc1 127.0.0.1" in _lines(logged)

    net.transports["127.0.0.1:8002"].up = False
    run_for(clock, 20)
    assert nodes[0].members["s2.dc1"].status == MemberStatus.FAILED
    assert "serf: EventMemberFailed: s2.dc1 127.0.0.1" in _lines(logged)
    assert "serf: EventMemberLeave: s2.dc1 127.0.0.1" not in _lines(logged)

    assert nodes[0].force_leave("s2.dc1")
    run_for(clock, 2)
    assert "serf: EventMemberLeave (forced): s2.dc1 127.0.0.1" in _lines(logged)
    assert nodes[0].force_leave("s2.dc1", prune=True)
    run_for(clock, 2)
    assert "serf: EventMemberReap (forced): s2.dc1 127.0.0.1" in _lines(logged)


def test_graceful_leave_is_logged_as_leave(logged: list[dict[str, Any]]) -> None:
    from twisted.internet.defer import Deferred

    clock, _, nodes, _ = make(3)
    d = Deferred.fromCoroutine(nodes[2].leave())
    run_for(clock, 3)
    assert d.called
    assert "serf: EventMemberLeave: s2.dc1 127.0.0.1" in _lines(logged)
    assert not any(line.startswith("serf: EventMemberFailed: s2.dc1") for line in _lines(logged))
