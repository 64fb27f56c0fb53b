"""``ReactorLike`` names only interfaces every Twisted reactor provides (the cast in
``installed_reactor`` is true), and tests' ``MemoryReactorClock`` covers core, time and TCP."""

from __future__ import annotations

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IReactorCore, IReactorTCP, IReactorTime
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.testing import MemoryReactorClock

from wanfedtx.reactors import ReactorLike


def test_every_reactor_provides_each_part() -> None:
    parts = ReactorLike.__bases__
    assert {p.__name__ for p in parts} == {
        "IReactorCore", "IReactorTime", "IReactorTCP", "IReactorUDP", "IReactorFromThreads",
    }
    for reactor_type in (EPollReactor, SelectReactor):
        for part in parts:
            assert part.implementedBy(reactor_type), (reactor_type, part)


def test_memory_reactor_clock_provides_core_time_and_tcp() -> None:
    fake = MemoryReactorClock()
    assert IReactorCore.providedBy(fake)
    assert IReactorTime.providedBy(fake)
    assert IReactorTCP.providedBy(fake)
