"""Requests during elections are held and retried for rpc_hold_timeout; forwarded calls have a
deadline; a server that cannot be dialed is skipped for the next one of its datacenter."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm.machine import FSM
from wanfedtx.rpc.codec import encode_response
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.errors import ConnectionClosed, DialError, NoLeader, RemoteError, RPCTimeout
from wanfedtx.rpc.forward import REPLY_BOUND, Forwarder, StaticRouter, call_deadline
from wanfedtx.rpc.interfaces import ServerAddress
from wanfedtx.rpc.pool import ConnPool
from wanfedtx.testing import FollowerConsensus, NotReadyLeaderConsensus, ScriptedForwarder

KV_PUT = {"Op": "set", "DirEnt": {"Key": "k", "Value": b"v"}}




def endpoints(errors: list[Exception], hold: float = 7.0) -> tuple[Endpoints, Clock,
                                                                  ScriptedForwarder]:
    clock = Clock()
    fwd = ScriptedForwarder(errors)
    fsm = FSM()
    follower = FollowerConsensus(fsm, "127.0.0.1:8300")
    ep = Endpoints("dc1", fsm.state, follower, clock, random.Random(3),
                   forwarder=fwd, hold_timeout=hold)
    return ep, clock, fwd


def outcome(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_write_during_an_election_is_held_until_a_leader_answers() -> None:
    ep, clock, fwd = endpoints([NoLeader(), DialError("dial tcp 10.0.0.1:8300: refused"),
                                RemoteError("No cluster leader")])
    result = outcome(ep.handlers()["KVS.Apply"](dict(KV_PUT)))
    assert result == [] and fwd.calls == 1
    for _ in range(100):
        if result:
            break
        clock.advance(0.1)
    assert result == [True] and fwd.calls == 4
    assert clock.seconds() < 7.0


def test_write_fails_with_no_leader_after_the_hold() -> None:
    ep, clock, fwd = endpoints([NoLeader()] * 10_000, hold=2.0)
    result = outcome(ep.handlers()["KVS.Apply"](dict(KV_PUT)))
    clock.pump([0.05] * 60)
    assert len(result) == 1 and isinstance(result[0].value, NoLeader)
    assert 2.0 <= clock.seconds() and fwd.calls > 2


def test_a_write_whose_connection_closed_is_not_retried_a_read_is() -> None:
    ep, clock, fwd = endpoints([ConnectionClosed("closed")])
    result = outcome(ep.handlers()["KVS.Apply"](dict(KV_PUT)))
    assert len(result) == 1 and isinstance(result[0].value, ConnectionClosed)
    assert fwd.calls == 1
    ep, clock, fwd = endpoints([ConnectionClosed("closed")])
    result = outcome(ep.handlers()["KVS.Get"]({"Key": "k"}))
    clock.pump([0.5] * 4)
    assert result == [True] and fwd.calls == 2


def test_call_deadline_is_the_blocking_wait_plus_a_bound() -> None:
    assert call_deadline({}) == REPLY_BOUND
    assert call_deadline({"MinQueryIndex": 5, "MaxQueryTime": 16 * 10**9}) == 17 + REPLY_BOUND
    assert call_deadline({"MinQueryIndex": 5}) == 300 + 300 / 16 + REPLY_BOUND
    assert call_deadline({"MinQueryIndex": 5, "MaxQueryTime": 3600 * 10**9}) == (
        600 + 600 / 16 + REPLY_BOUND)


def test_a_call_to_a_server_that_stopped_answering_times_out_and_drops_the_connection() -> None:
    r = MemoryReactorClock()
    pool = ConnPool(Dialer(r, "dc2", server=True), r)
    fwd = Forwarder(pool, "dc1", FollowerConsensus(FSM(), "x"), StaticRouter(
        {"dc2": [ServerAddress("s2", "127.0.0.1:8300")]}))
    result = outcome(fwd.forward_dc("dc2", "Catalog.ListNodes", {"Datacenter": "dc2"}))
    # the TCP connection is made; the server never answers
    _host, _port, factory, _, _ = r.tcpClients[0]
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    r.advance(0)
    assert result == [] and pool.keys()
    r.advance(REPLY_BOUND + 0.1)
    assert len(result) == 1 and isinstance(result[0].value, RPCTimeout)
    assert "after 10s" in str(result[0].value)
    assert pool.keys() == []


def test_a_server_that_cannot_be_dialed_is_skipped_for_the_next() -> None:
    class Pool:
        def __init__(self) -> None:
            self.tried: list[str] = []

        def rpc(self, dc: str, name: str, addr: str, method: str, args: Any = None,
                use_tls: bool = True, timeout: float | None = None) -> Deferred[Any]:
            self.tried.append(name)
            if name == "dead":
                return fail(DialError("dial tcp 127.0.0.1:1: connection refused"))
            return succeed({"ok": name})

    pool = Pool()
    fwd = Forwarder(pool, "dc1", FollowerConsensus(FSM(), "x"), StaticRouter(  # type: ignore[arg-type]
        {"dc2": [ServerAddress("dead", "127.0.0.1:1"), ServerAddress("live", "127.0.0.1:2")]}))
    assert outcome(fwd.forward_dc("dc2", "Status.Ping")) == [{"ok": "live"}]
    assert pool.tried == ["dead", "live"]



def test_a_new_leader_serves_default_reads_only_after_its_first_entry_is_applied() -> None:
    clock = Clock()
    fsm = FSM()
    consensus = NotReadyLeaderConsensus(fsm, "127.0.0.1:8300")
    ep = Endpoints("dc1", fsm.state, consensus, clock, random.Random(3), hold_timeout=7.0)
    read = outcome(ep.handlers()["KVS.Get"]({"Key": "k"}))
    stale = outcome(ep.handlers()["KVS.Get"]({"Key": "k", "AllowStale": True}))
    assert read == [] and len(stale) == 1  # stale reads never wait
    clock.advance(1.0)
    assert read == []
    consensus.noop_applied()
    assert len(read) == 1 and not isinstance(read[0], Exception) and "Index" in read[0]
    assert clock.getDelayedCalls() == []


def test_a_leader_that_never_becomes_ready_answers_not_ready_after_the_hold() -> None:
    clock = Clock()
    fsm = FSM()
    ep = Endpoints("dc1", fsm.state, NotReadyLeaderConsensus(fsm, "x"), clock, random.Random(3),
                   hold_timeout=2.0)
    read = outcome(ep.handlers()["Catalog.ListNodes"]({}))
    clock.advance(2.0)
    assert len(read) == 1 and str(read[0].value) == "Not ready to serve consistent reads"


def test_only_a_dial_error_moves_on_to_the_next_server() -> None:
    class Pool:
        def __init__(self, error: Exception) -> None:
            self.error = error
            self.tried: list[str] = []

        def rpc(self, dc: str, name: str, addr: str, method: str, args: Any = None,
                use_tls: bool = True, timeout: float | None = None) -> Deferred[Any]:
            self.tried.append(name)
            return fail(self.error)

    servers = {"dc2": [ServerAddress("a", "127.0.0.1:1"), ServerAddress("b", "127.0.0.1:2")]}
    # the call reached a server that answered with an error: not sent again elsewhere
    pool = Pool(RemoteError("Permission denied"))
    fwd = Forwarder(pool, "dc1", FollowerConsensus(FSM(), "x"),  # type: ignore[arg-type]
                    StaticRouter(servers))
    (failure,) = outcome(fwd.forward_dc("dc2", "KVS.Get", {"Key": "k"}))
    assert isinstance(failure.value, RemoteError) and pool.tried == ["a"]
    # no server could be dialed: the last dial error
    pool = Pool(DialError("dial tcp: refused"))
    fwd = Forwarder(pool, "dc1", FollowerConsensus(FSM(), "x"),  # type: ignore[arg-type]
                    StaticRouter(servers))
    (failure,) = outcome(fwd.forward_dc("dc2", "KVS.Get", {"Key": "k"}))
    assert isinstance(failure.value, DialError) and pool.tried == ["a", "b"]


def test_a_connection_whose_long_call_just_ended_is_not_reaped_at_once() -> None:
    r = MemoryReactorClock()
    pool = ConnPool(Dialer(r, "dc2", server=True), r, max_idle=120, reap_interval=30)
    pool.startService()
    result = outcome(pool.rpc("dc2", "s2", "127.0.0.1:8300", "KVS.Get", {"MinQueryIndex": 5}))
    _host, _port, factory, _, _ = r.tcpClients[0]
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport())
    r.advance(0)
    for _ in range(10):  # a blocking read that takes 5 minutes: in flight, never reaped
        r.advance(30)
    assert pool.keys() and result == []
    proto.dataReceived(encode_response(0, None, {"Index": 6}))
    assert result == [{"Index": 6}]
    r.advance(30)  # the call ended 30 s ago: idle time counts from its answer
    assert pool.keys()
    for _ in range(6):
        r.advance(30)
    assert pool.keys() == []  # then idle for longer than max_idle: closed
    pool.stopService()


def test_a_cancelled_forwarded_call_stops_its_deadline_and_ignores_a_late_answer() -> None:
    r = MemoryReactorClock()
    pool = ConnPool(Dialer(r, "dc2", server=True), r)
    fwd = Forwarder(pool, "dc1", FollowerConsensus(FSM(), "x"), StaticRouter(
        {"dc2": [ServerAddress("s2", "127.0.0.1:8300")]}))
    call = fwd.forward_dc("dc2", "KVS.Get", {"Datacenter": "dc2", "MinQueryIndex": 5})
    result = outcome(call)
    _host, _port, factory, _, _ = r.tcpClients[0]
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport())
    r.advance(0)
    assert result == [] and len(r.getDelayedCalls()) == 1  # the call's deadline
    call.cancel()  # the HTTP client went away
    assert len(result) == 1 and isinstance(result[0].value, CancelledError)
    assert r.getDelayedCalls() == []
    proto.dataReceived(encode_response(0, None, {"Index": 6}))  # the late answer: dropped
    assert len(result) == 1 and pool.keys()  # the connection stays for the next call
