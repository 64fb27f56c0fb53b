"""KV tombstones are reaped once they are older than the tombstone TTL: the leader routine notes
the tombstone index every granularity and applies a reap through consensus (the fault suite's
soak found tombstones never reaped: every delete grew the state and the servers' RSS)."""

from __future__ import annotations

import random

from twisted.internet import task

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.catalog.tombstones import TombstoneReaper
from wanfedtx.fsm import commands
from wanfedtx.fsm.commands import KVS_DELETE, KVS_SET, MessageType
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.state.kvs import TOMBSTONES


def _kv(consensus: LocalConsensus, op: str, key: str) -> None:
    consensus.apply(commands.encode(MessageType.KVS, {
        "Datacenter": "dc1", "Op": op, "DirEnt": {"Key": key, "Value": b"v"}}))


def _tombstones(fsm: FSM) -> list[str]:
    return sorted(r["Key"] for r in fsm.state.tables[TOMBSTONES].all())


def test_tombstones_older_than_the_ttl_are_reaped_newer_ones_stay() -> None:
    clock = task.Clock()
    fsm = FSM()
    consensus = LocalConsensus(fsm, "127.0.0.1:8300")
    endpoints = Endpoints("dc1", fsm.state, consensus, clock, random.Random(1))
    reaper = TombstoneReaper(endpoints, clock, ttl=60.0, granularity=10.0)
    reaper.startService()
    for key in ("a", "b"):
        _kv(consensus, KVS_SET, key)
        _kv(consensus, KVS_DELETE, key)
    clock.advance(10)  # noted: the index of a's and b's tombstones
    _kv(consensus, KVS_SET, "c")
    _kv(consensus, KVS_DELETE, "c")
    assert _tombstones(fsm) == ["a", "b", "c"]
    clock.pump([10] * 5)  # 60 s after the first note: not yet older than the TTL
    assert _tombstones(fsm) == ["a", "b", "c"]
    clock.advance(10)
    assert _tombstones(fsm) == ["c"]
    clock.pump([10] * 6)
    assert _tombstones(fsm) == []
    reaper.stopService()
    assert not clock.getDelayedCalls()


def test_followers_note_so_a_new_leader_reaps_without_waiting_a_whole_ttl() -> None:
    clock = task.Clock()
    fsm = FSM()
    consensus = LocalConsensus(fsm, "127.0.0.1:8300")
    leading = [False]
    consensus.is_leader = lambda: leading[0]  # type: ignore[method-assign]
    endpoints = Endpoints("dc1", fsm.state, consensus, clock, random.Random(1))
    reaper = TombstoneReaper(endpoints, clock, ttl=60.0, granularity=10.0)
    reaper.startService()
    _kv(consensus, KVS_SET, "a")
    _kv(consensus, KVS_DELETE, "a")
    clock.pump([10] * 8)  # well past the TTL, but not leading: nothing reaped
    assert _tombstones(fsm) == ["a"]
    leading[0] = True  # elected: the next tick reaps what it noted as a follower
    clock.advance(10)
    assert _tombstones(fsm) == []
    reaper.stopService()
