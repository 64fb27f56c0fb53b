"""The client's server router (Consul's router manager) driven with serf events and a Clock."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from wanfedtx.client.router import (
    REBALANCE_MIN,
    Rebalancer,
    ServerManager,
    address_of,
    server_text,
)
from wanfedtx.gossip.pools import ServerInfo
from wanfedtx.gossip.serf import Member, MemberEvent, MemberStatus, UserEvent


def server(name: str, dc: str = "dc1", addr: str = "10.0.0.1", port: str = "8300",
           status: MemberStatus = MemberStatus.ALIVE, **tags: str) -> Member:
    t = {"role": "consul", "dc": dc, "port": port, "vsn": "2", "build": "1.8.0:abc", **tags}
    return Member(name, addr, 8301, t, status, b"")


def client_member(name: str) -> Member:
    return Member(name, "10.0.0.9", 8301, {"role": "node", "dc": "dc1", "vsn": "2"},
                  MemberStatus.ALIVE, b"")


def names(m: ServerManager) -> list[str]:
    return [s.name for s in m.servers()]


def test_join_update_leave_failed_reap_change_the_list(logged: list[dict[str, Any]]) -> None:
    ups: list[int] = []
    m = ServerManager("dc1", on_server_up=lambda: ups.append(1))
    assert m.offline and m.find_server() is None and m.known_servers() == 0
    m.handle_event(MemberEvent("member-join", (server("s1"), server("s2", addr="10.0.0.2"),
                                               client_member("c1"))))
    assert names(m) == ["s1", "s2"] and not m.offline and ups == [1, 1]
    first = m.find_server()
    assert first is not None and first.name == "s1"
    assert server_text(first) == "s1 (Addr: tcp/10.0.0.1:8300) (DC: dc1)"
    assert address_of(first).addr == "10.0.0.1:8300"
    m.handle_event(MemberEvent("member-update", (server("s1", port="8400"),)))
    assert names(m) == ["s1", "s2"] and m.servers()[0].port == 8400
    m.handle_event(MemberEvent("member-failed", (server("s1", status=MemberStatus.FAILED),)))
    assert names(m) == ["s2"]
    m.handle_event(MemberEvent("member-join", (server("s3"),)))
    m.handle_event(MemberEvent("member-leave", (server("s2", status=MemberStatus.LEFT),)))
    assert names(m) == ["s3"]
    m.handle_event(MemberEvent("member-reap", (server("s3", status=MemberStatus.LEFT),)))
    assert names(m) == [] and m.find_server() is None
    texts = [e.get("log_format", "") for e in logged]
    assert any(t.startswith("adding server") for t in texts)
    assert any(t.startswith("updating server") for t in texts)
    assert any(t.startswith("removing server") for t in texts)


def test_wrong_dc_and_invalid_tags_never_make_a_server(logged: list[dict[str, Any]]) -> None:
    m = ServerManager("dc1")
    m.handle_event(MemberEvent("member-join", (
        server("other", dc="dc2"),
        server("badport", port="x"),
        server("nobuild", build="dev"),
        server("badexpect", expect="two"),
    )))
    assert m.known_servers() == 0
    warned = [e for e in logged if "wrong cluster" in e.get("log_format", "")]
    assert len(warned) == 1 and warned[0]["dc"] == "dc2"


def test_new_leader_user_event_fires_server_up() -> None:
    ups: list[int] = []
    m = ServerManager("dc1", on_server_up=lambda: ups.append(1))
    m.handle_event(UserEvent(1, "consul:new-leader", b"s1", False))
    m.handle_event(UserEvent(2, "deploy", b"", False))
    assert ups == [1]


def test_failed_server_rotates_only_when_still_first() -> None:
    m = ServerManager("dc1")
    m.handle_event(MemberEvent("member-join", tuple(server(n) for n in ("a", "b", "c"))))
    a = m.servers()[0]
    m.notify_failed_server(a)
    assert names(m) == ["b", "c", "a"]
    m.notify_failed_server(a)  # no longer first: nothing moves
    assert names(m) == ["b", "c", "a"]
    lone = ServerManager("dc1")
    lone.handle_event(MemberEvent("member-join", (server("x"),)))
    lone.notify_failed_server(lone.servers()[0])
    assert names(lone) == ["x"]


def test_rebalance_skips_servers_that_do_not_answer() -> None:
    clock = Clock()
    m = ServerManager("dc1", rng=random.Random(3))
    m.handle_event(MemberEvent("member-join", tuple(server(n) for n in ("a", "b", "c"))))
    pinged: list[str] = []
    dead = {"a", "b"}

    def ping(s: ServerInfo) -> Deferred[Any]:
        pinged.append(s.name)
        return fail(ConnectionRefusedError()) if s.name in dead else succeed(True)

    r = Rebalancer(m, ping, clock, lan_members=lambda: 10)
    r.startService()
    clock.advance(REBALANCE_MIN - 1)
    assert pinged == []
    clock.advance(1)
    assert pinged[-1] == "c" and set(pinged) <= {"a", "b", "c"}
    assert names(m)[0] == "c" and sorted(names(m)) == ["a", "b", "c"]
    assert not m.offline
    # nobody answers: the list is kept and marked offline
    dead.update({"c"})
    before = names(m)
    pinged.clear()
    clock.advance(REBALANCE_MIN + 60)
    assert sorted(pinged) == ["a", "b", "c"]
    assert names(m) == before and m.offline
    r.stopService()
    assert not clock.getDelayedCalls()


def test_rebalance_merges_servers_added_and_removed_meanwhile() -> None:
    m = ServerManager("dc1")
    m.handle_event(MemberEvent("member-join", tuple(server(n) for n in ("a", "b"))))
    candidates = [m.servers()[1], m.servers()[0]]  # b first
    m.handle_event(MemberEvent("member-join", (server("c"),)))
    m.handle_event(MemberEvent("member-leave", (server("a", status=MemberStatus.LEFT),)))
    assert m.save_rebalanced(candidates)
    assert names(m) == ["b", "c"]
    # the chosen head vanished meanwhile: nothing saved
    head_gone = [m.servers()[0]]
    m.handle_event(MemberEvent("member-leave", (server("b", status=MemberStatus.LEFT),)))
    assert not m.save_rebalanced(head_gone)
    assert names(m) == ["c"]


def test_next_interval_grows_with_the_pool() -> None:
    m = ServerManager("dc1", rng=random.Random(1))
    m.handle_event(MemberEvent("member-join", (server("a"),)))
    small = Rebalancer(m, lambda s: succeed(True), Clock(), lan_members=lambda: 10)
    assert REBALANCE_MIN <= small.next_interval() <= REBALANCE_MIN + 60
    big = Rebalancer(m, lambda s: succeed(True), Clock(), lan_members=lambda: 64 * 500)
    assert big.next_interval() == 500.0
