# -*- test-case-name: tests.unit.test_listening -*-
"""One draining server-endpoint service: listen, track every connection, close them all on stop.

Twisted's ``StreamServerEndpointService`` stops listening on ``stopService`` but leaves the
accepted connections open. Every listener of wanfedtx (the :8300 RPC port, the HTTP API, the
gossip TCP listener) also needs to close its connections and to know when the last socket is
gone, so that ``Agent.stop()`` fires only once the process holds no socket. The pieces:

* :class:`CloseNotifier`: the one "fires once the connection is closed" helper
  (``when_closed``), for protocols that offer it;
* :class:`Connections`: the open connections of one listener (or transport); ``close_all``
  closes (or aborts) each and returns a Deferred that fires once none is open;
* :class:`TrackingFactory`: wraps a factory so that each protocol it builds is tracked
  (``connectionLost`` is chained with a ``functools.partial``: no wrapper protocol, no wrapped
  transport, nothing per connection but one set entry);
* :class:`DrainingEndpointService`: listens on one or more ``IStreamServerEndpoint`` with a
  factory; ``stopService`` stops listening, closes every connection and returns a Deferred that
  fires once every listening port and every socket is closed.

Endpoints come from :func:`tcp_endpoint`, which asks for the kernel's ``somaxconn`` backlog
(:mod:`wanfedtx.netlimits`); :func:`bound_port` reads the port a TCP listener got.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTCP,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ServerFactory
from twisted.python.failure import Failure

from wanfedtx.netlimits import listen_backlog
from wanfedtx.services import Service


class CloseNotifier:
    """Deferreds that fire once, when the connection they watch is closed."""

    __slots__ = ("_waiters", "closed")

    def __init__(self) -> None:
        self.closed = False
        self._waiters: list[Deferred[None]] = []

    def when_closed(self) -> Deferred[None]:
        """Fires once the connection is closed (at once if it already is)."""
        if self.closed:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def fire(self) -> None:
        """The connection is closed: fire every waiter (later ones fire at once)."""
        self.closed = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


def transport_of(proto: Any) -> Any:
    """The transport of ``proto`` (a Site's protocol proxies to its channel's)."""
    transport = getattr(proto, "transport", None)
    if transport is None:
        transport = getattr(getattr(proto, "_channel", None), "transport", None)
    return transport


class Connections:
    """The open connections of one listener; ``drained()`` fires once none is open."""

    def __init__(self) -> None:
        self.open: set[Any] = set()
        self._drained: list[Deferred[None]] = []

    def track(self, proto: Any) -> Any:
        """Count ``proto`` open until its ``connectionLost``; returns it."""
        self.open.add(proto)
        # A partial rather than a wrapper or a Deferred per connection: thousands of
        # connections may be parked (blocking queries, gossip streams).
        proto.connectionLost = partial(self._lost, proto, proto.connectionLost)
        return proto

    def _lost(self, proto: Any, lost: Callable[[Any], Any], reason: Any = None) -> None:
        try:
            lost(reason)
        finally:
            self.open.discard(proto)
            if not self.open:
                drained, self._drained = self._drained, []
                for d in drained:
                    d.callback(None)

    def drained(self) -> Deferred[None]:
        """Fires once no connection is open."""
        if not self.open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d

    def close_all(self, abort: bool = True) -> Deferred[None]:
        """Abort (or cleanly close) every open connection; fires once none is open."""
        drained = self.drained()
        for proto in list(self.open):
            transport = transport_of(proto)
            if transport is None:
                continue
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()
        return drained


class TrackingFactory(ServerFactory):
    """Builds protocols with ``wrapped`` and tracks each in ``connections``."""

    noisy = False

    def __init__(self, wrapped: IProtocolFactory, connections: Connections) -> None:
        self.wrapped = wrapped
        self.connections = connections

    def doStart(self) -> None:
        self.wrapped.doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()

    def buildProtocol(self, addr: Any) -> Any:
        proto = self.wrapped.buildProtocol(addr)
        if proto is None:
            return None  # refused (e.g. a per-client limit): Twisted closes the socket
        return self.connections.track(proto)


def bound_port(port: IListeningPort) -> int:
    """The TCP port ``port`` listens on (the kernel's pick when port 0 was asked for)."""
    host = port.getHost()
    if not isinstance(host, IPv4Address | IPv6Address):
        raise TypeError(f"not a TCP listening port: {host!r}")
    return host.port


def tcp_endpoint(reactor: IReactorTCP, host: str, port: int) -> IStreamServerEndpoint:
    """A TCP server endpoint on ``host:port`` (IPv6 when ``host`` has a colon) with the
    kernel's ``somaxconn`` backlog."""
    endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
    return endpoint_type(reactor, port, backlog=listen_backlog(), interface=host)


class DrainingEndpointService(Service):
    """Listens on ``endpoints`` with ``factory``; stopping closes every connection.

    ``startService`` raises at once when an endpoint fails to listen synchronously (TCP
    endpoints do: "address already in use" reaches the caller). ``stopService`` stops every
    listening port, aborts (``abort=True``) or closes every open connection and returns a
    Deferred that fires once every port and every socket is closed. ``on_listening`` is called
    with each port as it starts listening. ``connections`` may be shared with connections the
    owner tracks itself (e.g. the gossip transport's outbound streams): stopping closes those too.
    """

    def __init__(
        self,
        endpoints: IStreamServerEndpoint | Sequence[IStreamServerEndpoint],
        factory: IProtocolFactory,
        *,
        abort: bool = True,
        on_listening: Callable[[IListeningPort], None] | None = None,
        connections: Connections | None = None,
    ) -> None:
        if IStreamServerEndpoint.providedBy(endpoints):
            endpoints = [endpoints]
        self.endpoints: list[IStreamServerEndpoint] = list(endpoints)
        self.factory = factory
        self.abort = abort
        self.on_listening = on_listening
        self.connections = connections if connections is not None else Connections()
        self.ports: list[IListeningPort] = []
        self._listening: Deferred[list[IListeningPort]] | None = None

    def startService(self) -> None:
        super().startService()
        tracking = TrackingFactory(self.factory, self.connections)
        waits: list[Deferred[IListeningPort]] = []
        for endpoint in self.endpoints:
            d = endpoint.listen(tracking)
            d.addCallback(self._listened)
            failed: list[Failure] = []

            def seen(f: Failure, failed: list[Failure] = failed) -> Failure:
                failed.append(f)
                return f

            d.addErrback(seen)
            if failed:
                d.addErrback(lambda _: None)
                failed[0].raiseException()
            waits.append(d)
        gathered = DeferredList(waits, fireOnOneErrback=True, consumeErrors=True)
        self._listening = gathered.addCallback(lambda _: list(self.ports))

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.ports.append(port)
        if self.on_listening is not None:
            self.on_listening(port)
        return port

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fires with the first endpoint's port once every endpoint listens (start first;
        ``ports`` has them all)."""
        if self._listening is None:
            raise RuntimeError("start the service first")
        d: Deferred[IListeningPort] = Deferred()

        def fire(ports: list[IListeningPort]) -> list[IListeningPort]:
            d.callback(ports[0])
            return ports

        self._listening.addCallback(fire)
        return d

    def stopService(self) -> Deferred[None]:
        super().stopService()
        waits: list[Deferred[Any]] = []
        ports, self.ports = self.ports, []
        for port in ports:
            stopped = port.stopListening()
            if isinstance(stopped, Deferred):
                waits.append(stopped)
        waits.append(self.connections.close_all(self.abort))
        every = DeferredList(waits, consumeErrors=True)
        return every.addCallback(lambda _: None)
