"""The draining endpoint service over a memory reactor: it listens with the somaxconn backlog,
tracks each connection the factory builds, and its stop fires only once every socket closed."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from wanfedtx import netlimits
from wanfedtx.listening import CloseNotifier, DrainingEndpointService, tcp_endpoint


class _Transport(StringTransport):
    """Closing calls ``connectionLost`` later, as a real socket does."""

    def __init__(self, proto: Protocol) -> None:
        super().__init__()
        self.proto = proto
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().loseConnection()

    def lose(self) -> None:
        self.proto.connectionLost(None)  # type: ignore[arg-type]


def _connect(service: DrainingEndpointService, reactor: MemoryReactorClock) -> Any:
    _port, factory, _backlog, _iface = reactor.tcpServers[-1]
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = _Transport(proto)
    proto.makeConnection(transport)
    return proto, transport


def test_listens_with_somaxconn_backlog_and_drains_on_stop() -> None:
    reactor = MemoryReactorClock()
    svc = DrainingEndpointService(
        [tcp_endpoint(reactor, "127.0.0.1", 0), tcp_endpoint(reactor, "::1", 0)],
        Factory.forProtocol(Protocol),
    )
    svc.startService()
    assert [(b, i) for _p, _f, b, i in reactor.tcpServers] == [
        (netlimits.listen_backlog(), "127.0.0.1"), (netlimits.listen_backlog(), "::1")]
    first: list[Any] = []
    svc.when_listening().addCallback(first.append)
    assert len(svc.ports) == 2 and first == svc.ports[:1]
    (p1, t1), (p2, t2) = _connect(svc, reactor), _connect(svc, reactor)
    assert svc.connections.open == {p1, p2}
    stopped: list[None] = []
    svc.stopService().addCallback(stopped.append)
    assert t1.aborted and t2.aborted and not stopped
    assert svc.ports == []
    t1.lose()
    assert not stopped
    t2.lose()
    assert stopped == [None] and svc.connections.open == set()


def test_close_without_abort_and_refused_protocols_are_not_tracked() -> None:
    reactor = MemoryReactorClock()

    class Refusing(Factory):
        def buildProtocol(self, addr: Any) -> Any:
            return None

    svc = DrainingEndpointService(tcp_endpoint(reactor, "127.0.0.1", 0), Refusing(), abort=False)
    svc.startService()
    _port, factory, _b, _i = reactor.tcpServers[-1]
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)) is None
    assert svc.connections.open == set()
    stopped: list[None] = []
    svc.stopService().addCallback(stopped.append)
    assert stopped == [None]


def test_listen_failure_raises_from_start() -> None:
    class Failing(MemoryReactorClock):
        def listenTCP(self, *a: Any, **kw: Any) -> Any:
            raise CannotListenError("127.0.0.1", 1, OSError("address already in use"))

    svc = DrainingEndpointService(tcp_endpoint(Failing(), "127.0.0.1", 1),
                                  Factory.forProtocol(Protocol))
    with pytest.raises(CannotListenError):
        svc.startService()


def test_close_notifier_fires_waiters_once_and_late_ones_at_once() -> None:
    n = CloseNotifier()
    early: list[None] = []
    n.when_closed().addCallback(early.append)
    assert early == []
    n.fire()
    late: list[None] = []
    n.when_closed().addCallback(late.append)
    assert early == [None] and late == [None]
