"""A secondary's way to the primary with WAN federation, under task.Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed

from wanfedtx.agent.primary_join import PrimaryJoin, primary_join_address, static_addresses


class Recorder:
    def __init__(self, results: list[Any]) -> None:
        self.results = results
        self.joins: list[list[str]] = []
        self.fallbacks: list[list[str]] = []
        self.exhausted = 0

    def join(self, addrs: list[str]) -> Deferred[int]:
        self.joins.append(addrs)
        r = self.results.pop(0)
        return fail(r) if isinstance(r, Exception) else succeed(r)


def make(clock: task.Clock, rec: Recorder, gateways: list[str], retry_max: int = 0) -> PrimaryJoin:
    return PrimaryJoin(
        clock,
        primary_datacenter="primary",
        primary_gateways=gateways,
        gateways_interval=5.0,
        retry_interval=30.0,
        retry_max=retry_max,
        refresh_fallback=rec.fallbacks.append,
        primary_gateways_ready=Deferred(),
        join_wan=rec.join,
        on_exhausted=lambda: setattr(rec, "exhausted", rec.exhausted + 1),
    )


def test_refresh_then_join_the_placeholder_with_retries() -> None:
    clock = task.Clock()
    rec = Recorder([RuntimeError("no route"), 1])
    pj = make(clock, rec, ["gw-b:4431", "gw-a:4431"])
    pj.startService()
    clock.advance(0)
    assert rec.fallbacks == [["gw-b:4431", "gw-a:4431"]]
    assert rec.joins == [["*.primary/192.0.2.2"]]
    assert not pj.joined
    clock.advance(29)
    assert len(rec.joins) == 1
    clock.advance(1)
    assert len(rec.joins) == 2 and pj.joined
    clock.advance(300)
    assert len(rec.joins) == 2  # joined once: no more attempts
    pj.stopService()


def test_join_retries_are_bounded_by_retry_max() -> None:
    clock = task.Clock()
    rec = Recorder([RuntimeError("a"), RuntimeError("b"), RuntimeError("c")])
    pj = make(clock, rec, [], retry_max=2)
    pj.startService()
    clock.advance(0)
    assert rec.fallbacks == []  # no primary_gateways: straight to the join
    clock.advance(30)
    assert len(rec.joins) == 2 and rec.exhausted == 0
    clock.advance(30)  # Consul's ``attempt > maxAttempts``: retry_max = 2 makes 3 attempts
    assert len(rec.joins) == 3 and rec.exhausted == 1
    pj.stopService()
    assert clock.getDelayedCalls() == []


def test_only_discovery_entries_keep_refreshing_until_ready() -> None:
    clock = task.Clock()
    rec = Recorder([1])
    pj = make(clock, rec, ["provider=aws tag_key=x"])
    pj.startService()
    clock.advance(0)
    clock.advance(5)
    assert rec.fallbacks == [] and rec.joins == []
    pj.primary_gateways_ready.callback(None)  # replicated states arrived: stop refreshing
    clock.advance(5)
    assert rec.joins == [["*.primary/192.0.2.2"]]
    pj.stopService()


def test_helpers() -> None:
    assert primary_join_address("dc1") == "*.dc1/192.0.2.2"
    assert static_addresses(["a:1", "provider=k8s", "b:2"], "mesh-gateway", "primary") == [
        "a:1",
        "b:2",
    ]
