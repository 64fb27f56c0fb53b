"""Leader routines as children of a MultiService added on leadership and removed on loss
(``wanfedtx.catalog.leader.LeaderServices``), with a fake consensus that flips leadership."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from wanfedtx.catalog.leader import LeaderServices


class FlipConsensus:
    def __init__(self) -> None:
        self.observers: list[Callable[[bool], None]] = []

    def add_leadership_observer(self, observer: Callable[[bool], None]) -> None:
        self.observers.append(observer)

    def remove_leadership_observer(self, observer: Callable[[bool], None]) -> None:
        self.observers.remove(observer)

    def lead(self, leading: bool) -> None:
        for o in list(self.observers):
            o(leading)


class SlowStop(Service):
    """A routine whose stop finishes when the test says so; records the stop order."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.setName(name)
        self.log = log
        self.stopped: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.log.append(self.name)
        return self.stopped


def test_term_added_on_leadership_removed_on_loss_and_stop_waits() -> None:
    consensus = FlipConsensus()
    order: list[str] = []
    built: list[list[SlowStop]] = []

    def build() -> list[Any]:
        routines = [SlowStop("replication", order), SlowStop("anti-entropy", order)]
        built.append(routines)
        return routines

    leader = LeaderServices(consensus, build)
    leader.startService()
    assert leader.term is None and leader.routines == []
    consensus.lead(True)
    first = built[0]
    assert leader.term is not None and list(leader) == [leader.term]
    assert leader.routines == first and all(r.running for r in first)
    consensus.lead(True)  # already leading: no second term
    assert len(built) == 1
    consensus.lead(False)
    assert leader.term is None and list(leader) == [] and order == ["anti-entropy", "replication"]
    consensus.lead(True)
    second = built[1]
    assert all(r.running for r in second)
    stopped: list[None] = []
    leader.stopService().addCallback(stopped.append)
    assert consensus.observers == [] and not any(r.running for r in second)
    for r in first + second[:1]:
        r.stopped.callback(None)
    assert stopped == []  # the last routine has not stopped yet
    second[1].stopped.callback(None)
    assert stopped == [None]


def test_no_term_while_stopped() -> None:
    consensus = FlipConsensus()
    leader = LeaderServices(consensus, lambda: [Service()])
    leader.startService()
    d = leader.stopService()
    assert d.called
    for o in consensus.observers:
        o(True)
    assert leader.term is None


def test_a_second_stop_or_a_stop_without_start_unregisters_nothing() -> None:
    consensus = FlipConsensus()
    never_started = LeaderServices(consensus, lambda: [Service()])
    never_started.stopService()  # raised ValueError (observer not in list) before
    leader = LeaderServices(consensus, lambda: [Service()])
    leader.startService()
    consensus.lead(True)
    leader.stopService()
    leader.stopService()
    assert consensus.observers == [] and leader.term is None
    leader.startService()
    assert consensus.observers == [leader.leadership_changed]
