"""The leader keeps the raft configuration equal to the servers: a server that left (or was
reaped) is removed, an alive server that is no voter is added, a failed one stays; changes raft
refuses for now are tried again."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.agent.reconcile import RAFT_RETRY_INTERVAL, MemberReconciler
from wanfedtx.gossip.serf import Member, MemberEvent, MemberStatus
from wanfedtx.raft.errors import ConfigChangeError


def server(name: str, addr: str, status: MemberStatus = MemberStatus.ALIVE) -> Member:
    tags = {"dc": "dc1", "id": f"id-{name}", "vsn": "2", "build": "1.8.0:abc",
            "role": "consul", "port": "8300"}
    return Member(name, addr, 8301, tags, status, b"")


class FakeRaft:
    def __init__(self, voters: list[str]) -> None:
        self.voters = set(voters)
        self.refuse = 0  # refuse this many changes with ConfigChangeError
        self.calls: list[tuple[str, str]] = []

    def peers(self) -> list[str]:
        return sorted(self.voters)

    def _change(self, op: str, addr: str) -> Deferred[tuple[int, Any]]:
        self.calls.append((op, addr))
        if self.refuse:
            self.refuse -= 1
            return fail(ConfigChangeError("a configuration change is still being committed"))
        if op == "add":
            self.voters.add(addr)
        else:
            self.voters.discard(addr)
        return succeed((1, None))

    def add_voter(self, addr: str) -> Deferred[tuple[int, Any]]:
        return self._change("add", addr)

    def remove_server(self, addr: str) -> Deferred[tuple[int, Any]]:
        return self._change("remove", addr)


def setup(voters: list[str], members: list[Member]) -> tuple[FakeRaft, MemberReconciler, Clock]:
    clock = Clock()
    catalog = CatalogAgent(node_name="s1", datacenter="dc1", advertise_addr="10.0.0.1",
                           server_port=8300, reactor=clock)
    raft = FakeRaft(voters)
    rec = MemberReconciler(catalog.endpoints, lambda: members, "s1", clock, raft=raft)
    return raft, rec, clock


THREE = ["10.0.0.1:8300", "10.0.0.2:8300", "10.0.0.3:8300"]


def test_a_server_that_left_is_removed_and_a_failed_one_stays() -> None:
    members = [server("s1", "10.0.0.1"), server("s2", "10.0.0.2"), server("s3", "10.0.0.3")]
    raft, rec, _ = setup(THREE, members)
    rec.startService()
    assert raft.calls == []  # every alive server is a voter already
    rec.handle_event(MemberEvent("member-failed",
                                 (server("s3", "10.0.0.3", MemberStatus.FAILED),)))
    assert raft.peers() == THREE
    rec.handle_event(MemberEvent("member-leave", (server("s2", "10.0.0.2", MemberStatus.LEFT),)))
    assert raft.peers() == ["10.0.0.1:8300", "10.0.0.3:8300"]
    rec.handle_event(MemberEvent("member-reap", (server("s3", "10.0.0.3", MemberStatus.LEFT),)))
    assert raft.peers() == ["10.0.0.1:8300"]
    rec.stopService()


def test_the_leader_never_removes_itself() -> None:
    raft, rec, _ = setup(THREE, [server("s1", "10.0.0.1")])
    rec.startService()
    rec.handle_event(MemberEvent("member-leave", (server("s1", "10.0.0.1", MemberStatus.LEFT),)))
    assert raft.calls == [] and raft.peers() == THREE
    rec.stopService()


def test_a_returning_server_is_added_and_a_refused_change_is_retried() -> None:
    members = [server("s1", "10.0.0.1"), server("s2", "10.0.0.2")]
    raft, rec, clock = setup(["10.0.0.1:8300", "10.0.0.2:8300"], members)
    rec.startService()
    raft.refuse = 2
    rec.handle_event(MemberEvent("member-join", (server("s3", "10.0.0.3"),)))
    assert "10.0.0.3:8300" not in raft.peers()
    clock.advance(RAFT_RETRY_INTERVAL)
    assert "10.0.0.3:8300" not in raft.peers()
    clock.advance(RAFT_RETRY_INTERVAL)
    assert raft.peers() == THREE
    assert raft.calls == [("add", "10.0.0.3:8300")] * 3
    rec.stopService()


def test_stopping_cancels_pending_retries() -> None:
    raft, rec, clock = setup(["10.0.0.1:8300"], [server("s1", "10.0.0.1")])
    rec.startService()
    raft.refuse = 1
    rec.handle_event(MemberEvent("member-join", (server("s2", "10.0.0.2"),)))
    rec.stopService()
    assert clock.getDelayedCalls() == []
    assert raft.calls == [("add", "10.0.0.2:8300")]


def test_a_read_replica_is_not_made_a_voter() -> None:
    raft, rec, _ = setup(["10.0.0.1:8300"], [server("s1", "10.0.0.1")])
    rec.startService()
    replica = server("s2", "10.0.0.2")
    replica.tags["nonvoter"] = "1"
    rec.handle_event(MemberEvent("member-join", (replica,)))
    assert raft.calls == [] and raft.peers() == ["10.0.0.1:8300"]
    rec.stopService()
