"""The client's RPC (Consul's ``Client.RPC``) over a fake pool and a Clock."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from wanfedtx.client.errors import NO_SERVERS, ClientRPCError, NoServers, RateExceeded
from wanfedtx.client.router import ServerManager
from wanfedtx.client.rpc import ClientRPC, can_retry
from wanfedtx.gossip.serf import Member, MemberEvent, MemberStatus
from wanfedtx.metrics import Registry
from wanfedtx.rpc.errors import ConnectionClosed, DialError, RemoteError, RPCTimeout


def manager(*nodes: str) -> ServerManager:
    m = ServerManager("dc1")
    members = tuple(
        Member(n, f"10.0.0.{i + 1}", 8301,
               {"role": "consul", "dc": "dc1", "port": "8300", "vsn": "2", "build": "1.8.0"},
               MemberStatus.ALIVE, b"")
        for i, n in enumerate(nodes))
    if members:
        m.handle_event(MemberEvent("member-join", members))
    return m


class FakePool:
    """Answers each call from a script of results (exceptions fail the call)."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str, str, str, Any, float | None]] = []

    def rpc(self, dc: str, node_name: str, addr: str, method: str, args: Any = None,
            use_tls: bool = True, timeout: float | None = None) -> Deferred[Any]:
        self.calls.append((dc, node_name, addr, method, args, timeout))
        result = self.script.pop(0) if self.script else "ok"
        if isinstance(result, Deferred):
            return result
        return fail(result) if isinstance(result, Exception) else succeed(result)


def make(pool: FakePool, m: ServerManager, clock: Clock, **kw: Any) -> ClientRPC:
    return ClientRPC(m, pool, "dc1", clock, rng=random.Random(0), metrics=Registry(), **kw)


def result(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the call has not finished"
    return out[0]


def test_no_servers_answers_consuls_text_at_once() -> None:
    pool = FakePool()
    rpc = make(pool, manager(), Clock())
    failure = result(rpc.rpc("KVS.Get", {"Key": "x"}))
    assert failure.check(NoServers) and str(failure.value) == NO_SERVERS == \
        "No known Consul servers"
    assert pool.calls == []


def test_call_goes_to_the_first_server_with_the_agents_dc_and_a_deadline() -> None:
    pool = FakePool({"Entries": None})
    reg = Registry()
    rpc = ClientRPC(manager("s1", "s2"), pool, "dc1", Clock(), metrics=reg)
    args = {"Datacenter": "dc2", "Key": "x", "MinQueryIndex": 5, "MaxQueryTime": 10**9}
    assert result(rpc.rpc("KVS.Get", args)) == {"Entries": None}
    dc, node, addr, method, sent, timeout = pool.calls[0]
    assert (dc, node, addr, method, sent) == ("dc1", "s1", "10.0.0.1:8300", "KVS.Get", args)
    assert timeout == pytest.approx(1 + 1 / 16 + 10)
    assert reg.counter("client.rpc", "").value() == 1


def test_no_leader_is_retried_on_the_next_server_within_the_hold_time() -> None:
    clock = Clock()
    m = manager("s1", "s2")
    pool = FakePool(RemoteError("No cluster leader"), "done")
    rpc = make(pool, m, clock)
    d = rpc.rpc("KVS.Apply", {"Op": "set"})
    assert not d.called
    clock.advance(7 / 16)
    assert result(d) == "done"
    assert [c[1] for c in pool.calls] == ["s1", "s2"]
    assert [s.name for s in m.servers()] == ["s2", "s1"]


def test_no_leader_gives_up_after_the_hold_time_with_consuls_wrapping() -> None:
    clock = Clock()
    pool = FakePool(*[RemoteError("No cluster leader")] * 1000)
    rpc = make(pool, manager("s1"), clock, hold_timeout=7.0)
    d = rpc.rpc("KVS.Apply", {})
    for _ in range(200):
        clock.advance(0.5)
    failure = result(d)
    assert failure.check(ClientRPCError)
    assert str(failure.value) == "rpc error making call: No cluster leader"
    assert 1 < len(pool.calls) < 1000


def test_eof_is_retried_for_reads_only() -> None:
    clock = Clock()
    pool = FakePool(ConnectionClosed("EOF"), "read-ok")
    rpc = make(pool, manager("s1", "s2"), clock)
    d = rpc.rpc("Catalog.ListNodes", {})
    clock.advance(1)
    assert result(d) == "read-ok"
    pool = FakePool(ConnectionClosed("EOF"), "never")
    rpc = make(pool, manager("s1", "s2"), clock)
    failure = result(rpc.rpc("KVS.Apply", {}))
    assert str(failure.value) == "rpc error making call: EOF"
    assert len(pool.calls) == 1


def test_dial_errors_are_retried_and_wrapped_as_getting_client() -> None:
    clock = Clock()
    pool = FakePool(DialError("dial tcp 10.0.0.1:8300: refused"), "ok")
    m = manager("s1", "s2")
    rpc = make(pool, m, clock)
    d = rpc.rpc("KVS.Apply", {})
    clock.advance(1)
    assert result(d) == "ok"
    pool = FakePool(*[DialError("refused")] * 100)
    rpc = make(pool, manager("s1"), clock, hold_timeout=1.0)
    d = rpc.rpc("Status.Leader", {})
    for _ in range(40):
        clock.advance(0.1)
    assert str(result(d).value) == "rpc error getting client: refused"


def test_other_errors_are_not_retried() -> None:
    for exc in (RemoteError("Must provide service name"),
                RPCTimeout("KVS.Get", "s1", "dc1", 5)):
        pool = FakePool(exc, "never")
        rpc = make(pool, manager("s1", "s2"), Clock())
        failure = result(rpc.rpc("Health.ServiceNodes", {}))
        assert len(pool.calls) == 1
        if isinstance(exc, RemoteError):
            assert str(failure.value) == "rpc error making call: Must provide service name"
        else:
            assert failure.check(RPCTimeout)
    assert can_retry("KVS.Get", ConnectionClosed())
    assert not can_retry("Catalog.Register", ConnectionClosed())


def test_rate_limit_refuses_with_consuls_text() -> None:
    clock = Clock()
    reg = Registry()
    rpc = ClientRPC(manager("s1"), FakePool(), "dc1", clock, rate=1.0, burst=2, metrics=reg)
    assert result(rpc.rpc("Status.Leader", {})) == "ok"
    assert result(rpc.rpc("Status.Leader", {})) == "ok"
    failure = result(rpc.rpc("Status.Leader", {}))
    assert failure.check(RateExceeded) and str(failure.value) == "RPC rate limit exceeded"
    assert reg.counter("client.rpc.exceeded", "").value() == 1
    clock.advance(1)
    assert result(rpc.rpc("Status.Leader", {})) == "ok"


def test_a_cancelled_call_stops_without_a_retry() -> None:
    pending: Deferred[Any] = Deferred()
    pool = FakePool(pending)
    rpc = make(pool, manager("s1", "s2"), Clock())
    d = rpc.rpc("KVS.Get", {"MinQueryIndex": 3})
    d.cancel()
    assert len(pool.calls) == 1
    result(d)  # CancelledError, consumed


def test_a_held_call_fails_at_once_with_its_error_when_the_agent_stops() -> None:
    clock = Clock()
    pool = FakePool(*[RemoteError("No cluster leader")] * 1000)
    rpc = make(pool, manager("s1"), clock, hold_timeout=7.0)
    d = rpc.rpc("KVS.Apply", {})
    clock.advance(0.1)
    rpc.stop()  # no clock advance: the hold ends now
    failure = result(d)
    assert str(failure.value) == "rpc error making call: No cluster leader"
    assert clock.getDelayedCalls() == []
