# -*- test-case-name: tests.unit.test_reactors -*-
"""The reactor type wanfedtx passes around: the Twisted reactor interfaces its parts use.

A part that only needs time takes an ``IReactorTime`` (tests pass ``task.Clock``), one that only
listens takes an ``IReactorTCP``, one that only hands work back from a thread takes an
``IReactorFromThreads``. A part that needs several of them, usually because it passes the reactor on
to children that each need one, takes a ``ReactorLike``: the core (``run``, ``stop``, system event
triggers), time, TCP, UDP and ``callFromThread``. Every Twisted reactor provides all five; tests
pass ``twisted.internet.testing.MemoryReactorClock`` (core, time and TCP).

``ReactorLike`` is a zope interface that extends Twisted's ones rather than a ``typing.Protocol``:
Twisted's own APIs (``deferLater``, ``LoopingCall.clock``, ``Deferred.addTimeout``, the endpoints,
``TLSMemoryBIOFactory``, ``deferToThreadPool``) are typed with those interfaces, which mypy checks
by name, so a structural protocol could not be handed on to them. No object declares that it
provides ``ReactorLike``; the type checker sees the global reactor as one through
``installed_reactor``, and typed tests ``cast`` their fakes to it.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFromThreads,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
)


class ReactorLike(IReactorCore, IReactorTime, IReactorTCP, IReactorUDP, IReactorFromThreads):
    """Core (``run``, ``stop``, ``callWhenRunning``), time (``callLater``, ``seconds``), TCP
    (``listenTCP``, ``connectTCP``), UDP (``listenUDP``) and ``callFromThread``: the reactor parts
    wanfedtx uses."""


def installed_reactor() -> ReactorLike:
    """The global Twisted reactor (installing the default one on first use), typed as the
    ``ReactorLike`` it is."""
    from twisted.internet import reactor

    return cast(ReactorLike, reactor)
