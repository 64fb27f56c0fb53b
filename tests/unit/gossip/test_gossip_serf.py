"""The serf layer under task.Clock on an in-memory network."""

from __future__ import annotations

import random

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred

from wanfedtx.gossip import serf as serfmod
from wanfedtx.gossip.config import local_config
from wanfedtx.gossip.serf import (
    Event,
    MemberEvent,
    MemberStatus,
    Query,
    Serf,
    SerfConfig,
    UserEvent,
    decode_tags,
    encode_tags,
)
from wanfedtx.gossip.simnet import SimNetwork, run_for


def test_tags_meta_golden() -> None:
    # serf tags as Go encodes them (map order varies):
    # bf ff 83 a4"role" a6"consul" a2"dc" a3"dc2" a4"port" a4"8300"
    meta = encode_tags({"role": "consul", "dc": "dc2", "port": "8300"})
    assert meta[:2] == b"\xff\x83"
    assert len(meta) == 31
    assert decode_tags(meta) == {"role": "consul", "dc": "dc2", "port": "8300"}
    assert decode_tags(b"consul") == {"role": "consul"}


def test_intent_golden() -> None:
    assert serfmod.JoinIntent(1, "srv1.dc2").encode() == (
        b"\x01\x82\xa5LTime\x01\xa4Node\xa8srv1.dc2"
    )
    assert serfmod.LeaveIntent(2, "srv1.dc2").encode() == (
        b"\x00\x83\xa5LTime\x02\xa4Node\xa8srv1.dc2\xa5Prune\xc2"
    )
    assert serfmod.UserEventMsg(1, "deploy", b"v1").encode() == (
        b"\x03\x84\xa2CC\xc2\xa5LTime\x01\xa4Name\xa6deploy\xa7Payload\xa2v1"
    )


def make(
    n: int, reconnect_interval: float = 30.0, reconnect_timeout: float = 30.0
) -> tuple[task.Clock, SimNetwork, list[Serf], list[list[Event]]]:
    clock = task.Clock()
    net = SimNetwork(clock)
    nodes, evs = [], []
    for i in range(n):
        cfg = local_config()
        cfg.bind_port = 8000 + i
        cfg.retransmit_mult = 4  # LAN value: with 4 nodes every broadcast reaches every peer
        events: list[Event] = []
        s = Serf(
            SerfConfig(
                f"s{i}.dc1",
                cfg,
                tags={"role": "consul", "dc": "dc1", "i": str(i)},
                reap_interval=1.0,
                reconnect_timeout=reconnect_timeout,
                leave_propagate_delay=0.2,
                reconnect_interval=reconnect_interval,
            ),
            net.transport("127.0.0.1", 8000 + i),
            clock,
            random.Random(i),
            events.append,
        )
        s.start()
        nodes.append(s)
        evs.append(events)
    for s in nodes[1:]:
        res: list[object] = []
        Deferred.fromCoroutine(s.join(["s0.dc1/127.0.0.1:8000"])).addBoth(res.append)
        run_for(clock, 0.1)
        assert res == [1]
    # Gossip plus push/pull (15 s in the local profile) must converge within 20 simulated s.
    want = {f"s{i}.dc1" for i in range(n)}
    for _ in range(200):
        if all({m.name for m in s.member_list()} == want for s in nodes):
            break
        run_for(clock, 0.1)
    return clock, net, nodes, evs


def kinds(events: list[Event], kind: str) -> set[str]:
    return {
        m.name for e in events if isinstance(e, MemberEvent) and e.type == kind for m in e.members
    }


def test_join_tags_events_queries_leave_fail_reap() -> None:
    clock, net, nodes, evs = make(4)
    for s in nodes:
        assert {m.name for m in s.member_list()} == {f"s{i}.dc1" for i in range(4)}
        assert s.members["s2.dc1"].tags["i"] == "2"
        assert s.members["s2.dc1"].vsn == b"\x01\x05\x02\x02\x05\x04"

    nodes[1].user_event("deploy", b"v1")
    run_for(clock, 1)
    for e in evs:
        assert [x for x in e if isinstance(x, UserEvent)] == [UserEvent(0, "deploy", b"v1", False)]

    for e, s in zip(evs, nodes, strict=True):
        s.on_event = lambda ev, e=e, s=s: (  # type: ignore[misc]
            e.append(ev),
            isinstance(ev, Query) and ev.respond(b"r-" + s.name.encode()),
        )
    q = nodes[0].query("ping-q", b"hello")
    run_for(clock, nodes[0].default_query_timeout() + 0.1)
    assert q.finished.called
    assert set(q.acks) == {f"s{i}.dc1" for i in range(4)}
    assert q.responses["s3.dc1"] == b"r-s3.dc1"

    d = Deferred.fromCoroutine(nodes[3].leave())
    run_for(clock, 3)
    assert d.called
    for e in evs[:3]:
        assert "s3.dc1" in kinds(e, "member-leave")
        assert "s3.dc1" not in kinds(e, "member-failed")
    assert nodes[0].members["s3.dc1"].status == MemberStatus.LEFT

    net.transports["127.0.0.1:8002"].up = False
    run_for(clock, 20)
    for e in evs[:2]:
        assert "s2.dc1" in kinds(e, "member-failed")
    assert nodes[0].members["s2.dc1"].status == MemberStatus.FAILED
    run_for(clock, 40)
    assert "s2.dc1" in kinds(evs[0], "member-reap")
    assert "s2.dc1" not in nodes[0].members


@pytest.mark.parametrize("reconnect", [2.0, 1e6], ids=["reconnect", "no-reconnect"])
def test_partition_heals_through_reconnect(reconnect: float) -> None:
    clock, net, nodes, _evs = make(3, reconnect_interval=reconnect, reconnect_timeout=600)
    t2 = net.transports["127.0.0.1:8002"]
    t2.up = False  # partition s2 away: everyone marks it failed...
    # ...for longer than GossipToTheDeadTime (15 s local), after which memberlist stops gossiping
    # to it and forgets it; only serf's reconnect can then heal the partition.
    run_for(clock, 60)
    assert nodes[0].members["s2.dc1"].status == MemberStatus.FAILED
    t2.up = True
    for _ in range(600):
        if all(s.members["s2.dc1"].status == MemberStatus.ALIVE for s in nodes[:2]):
            break
        run_for(clock, 0.1)
    healed = all(s.members["s2.dc1"].status == MemberStatus.ALIVE for s in nodes[:2])
    assert healed is (reconnect < 100)


def test_metrics_in_prometheus_text() -> None:
    from wanfedtx.metrics import Registry

    reg = Registry()
    clock = task.Clock()
    net = SimNetwork(clock)
    nodes = []
    for i in range(2):
        cfg = local_config()
        cfg.bind_port = 8100 + i
        s = Serf(
            SerfConfig(f"m{i}", cfg),
            net.transport("127.0.0.1", 8100 + i),
            clock,
            random.Random(i),
            registry=reg,
        )
        s.start()
        nodes.append(s)
    Deferred.fromCoroutine(nodes[1].join(["m0/127.0.0.1:8100"]))
    run_for(clock, 3)
    nodes[0].user_event("e", b"")
    run_for(clock, 1)
    text = reg.render()
    assert "consul_serf_member_join 4" in text  # each node: itself and the other
    assert "consul_serf_events 2" in text
    sent = [ln for ln in text.splitlines() if ln.startswith("consul_memberlist_udp_sent ")]
    assert sent and float(sent[0].split()[1]) > 0


def test_force_leave_marks_failed_left_everywhere_and_prune_forgets() -> None:
    clock, net, nodes, evs = make(3, reconnect_interval=1e6, reconnect_timeout=600)
    assert nodes[0].force_leave("nobody") is False
    # An alive node refutes a forced leave about itself.
    assert nodes[0].force_leave("s1.dc1") is True
    run_for(clock, 3)
    assert all(s.members["s1.dc1"].status == MemberStatus.ALIVE for s in nodes)

    net.transports["127.0.0.1:8002"].up = False
    run_for(clock, 20)
    assert nodes[0].members["s2.dc1"].status == MemberStatus.FAILED
    assert nodes[0].force_leave("s2.dc1")
    run_for(clock, 2)
    for s, e in zip(nodes[:2], evs[:2], strict=True):
        assert s.members["s2.dc1"].status == MemberStatus.LEFT
        assert "s2.dc1" in kinds(e, "member-leave")
    assert nodes[0].force_leave("s2.dc1", prune=True)
    run_for(clock, 2)
    for s, e in zip(nodes[:2], evs[:2], strict=True):
        assert "s2.dc1" not in s.members
        assert "s2.dc1" in kinds(e, "member-reap")


@pytest.mark.parametrize("handoff", [True, False])
def test_leave_is_seen_as_left_even_when_every_gossip_packet_is_lost(
    handoff: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leave intent and memberlist's dead message travel by UDP gossip; if a peer misses
    both (a busy host, a lossy link) its failure detector declares the leaver failed. The
    leaving node therefore also hands its leave over TCP (a push/pull naming itself among the
    left members), so the peer ends with the member left. Without the hand-off (the second
    case) the peer sees it failed: this is what the hand-off fixes."""
    if not handoff:
        monkeypatch.setattr(serfmod.Serf, "_hand_off_leave", _no_handoff)
    clock, net, nodes, evs = make(3, reconnect_interval=1e6)
    net.packet_loss = 1.0  # every UDP packet from now on is lost; streams still work
    d = Deferred.fromCoroutine(nodes[2].leave())
    for _ in range(1200):
        if d.called:
            break
        run_for(clock, 0.01)
    assert d.called
    net.transports["127.0.0.1:8002"].up = False  # the leaver stops as soon as leave() returns
    run_for(clock, 30)
    statuses = {s.members["s2.dc1"].status for s in nodes[:2]}
    if handoff:
        assert statuses == {MemberStatus.LEFT}
        for e in evs[:2]:
            assert "s2.dc1" in kinds(e, "member-leave")
    else:
        assert MemberStatus.FAILED in statuses


async def _no_handoff(self: object) -> None:
    return None


def test_a_leave_whose_time_first_came_as_a_status_time_still_ends_left() -> None:
    """Regression (the leave test of a full run, server identity on): a peer that had the leaver
    *leaving* push/pulled its status time, which merges as a join intent and takes that time;
    the gossiped leave intent (same time) was then ignored as old, memberlist reported the node
    gone, so it was failed; and the push/pulls of peers that had it left carried the same time
    again, so it stayed failed and the new leader never removed the server from raft. Merged
    left members now count one past their status time (serf's MergeRemoteState does)."""
    _clock, _net, nodes, evs = make(3, reconnect_interval=1e6)
    s, leaver = nodes[0], "s2.dc1"
    m = s.members[leaver]
    leave_time = m.status_ltime + 5

    def push_pull(left: bool) -> bytes:
        return serfmod.PushPullState(
            ltime=leave_time + 1, status_ltimes={leaver: leave_time},
            left_members=[leaver] if left else [], event_ltime=0, events=[],
            query_ltime=0).encode()

    s.merge_remote_state(push_pull(left=False), join=False)  # from a peer that has it leaving
    assert (m.status, m.status_ltime) == (MemberStatus.ALIVE, leave_time)
    s._handle_leave_intent(serfmod.LeaveIntent(leave_time, leaver))  # the intent: old now
    assert m.status == MemberStatus.ALIVE
    s.notify_leave(s.memberlist.node_map[leaver].snapshot())  # memberlist: the node is gone
    assert m.status == MemberStatus.FAILED
    s.merge_remote_state(push_pull(left=True), join=False)  # from a peer that has it left
    assert m.status == MemberStatus.LEFT
    assert leaver in kinds(evs[0], "member-leave")
