"""A stop ends requests held for a leader at once (``wanfedtx.rpc.hold``): a server's held write
fails with the error it was held on, a read waiting for a new leader's first entry with "Not
ready", a client agent's held call with its last error; nothing waits out the hold timeout."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_rpc_hold_and_deadlines import KV_PUT, endpoints, outcome
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm.machine import FSM
from wanfedtx.rpc.errors import NoLeader
from wanfedtx.rpc.hold import Holds
from wanfedtx.testing import NotReadyLeaderConsensus


def test_a_held_write_fails_with_its_error_when_the_server_stops() -> None:
    ep, clock, fwd = endpoints([NoLeader()] * 10_000)
    result = outcome(ep.handlers()["KVS.Apply"](dict(KV_PUT)))
    clock.advance(0.2)
    assert result == [] and fwd.calls >= 1
    ep.stop()  # no clock advance: the hold ends now, not 7 s later
    assert len(result) == 1 and isinstance(result[0].value, NoLeader)
    calls = fwd.calls
    later = outcome(ep.handlers()["KVS.Apply"](dict(KV_PUT)))
    assert len(later) == 1 and isinstance(later[0].value, NoLeader)
    assert fwd.calls == calls + 1  # tried once, never held after the stop
    assert clock.getDelayedCalls() == []


def test_a_read_waiting_for_a_new_leader_ends_not_ready_when_the_server_stops() -> None:
    clock = Clock()
    fsm = FSM()
    ep = Endpoints("dc1", fsm.state, NotReadyLeaderConsensus(fsm, "x"), clock, random.Random(3),
                   hold_timeout=7.0)
    read = outcome(ep.handlers()["Catalog.ListNodes"]({}))
    clock.advance(1.0)
    assert read == []
    ep.stop()
    assert len(read) == 1 and str(read[0].value) == "Not ready to serve consistent reads"
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("stop_first", [False, True])
def test_holds_pause_returns_false_once_stopped(stop_first: bool) -> None:
    clock = Clock()
    holds = Holds(clock)
    if stop_first:
        holds.stop()
    got: list[Any] = []
    Deferred.fromCoroutine(holds.pause(5.0)).addBoth(got.append)
    if not stop_first:
        assert got == []
        holds.stop()
    assert got == [False] and clock.getDelayedCalls() == []


def test_holds_pause_passes_a_callers_cancellation_on() -> None:
    clock = Clock()
    holds = Holds(clock)
    d = Deferred.fromCoroutine(holds.pause(5.0))
    got: list[Any] = []
    d.addErrback(lambda f: got.append(f.check(CancelledError)))
    d.cancel()
    assert got == [CancelledError] and not holds.stopped
    done: list[Any] = []
    Deferred.fromCoroutine(holds.pause(1.0)).addBoth(done.append)
    clock.advance(1.0)
    assert done == [True]
