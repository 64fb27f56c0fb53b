# -*- test-case-name: tests.integration.gossip,tests.unit.test_listening -*-
"""Twisted UDP + TCP transport for memberlist (like ``NetTransport``); an ``IGossipTransport``.

Packets are UDP datagrams on the bind port; streams are TCP connections on the same port number.
Each stream connection is driven by an ``IStreamSink`` from the core. The wanfed transport wraps
this one for names in other datacenters. The TCP listener is the draining endpoint service of
:mod:`wanfedtx.listening`; every stream (accepted, dialed or ingested) is tracked in its
``Connections``, so ``shutdown`` fires once every socket is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IProtocol, IReactorTime
from twisted.internet.protocol import (
    ClientFactory,
    DatagramProtocol,
    Factory,
    Protocol,
    connectionDone,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.hostport import split_host_port
from wanfedtx.listening import Connections, DrainingEndpointService, bound_port, tcp_endpoint
from wanfedtx.reactors import ReactorLike

from .errors import GossipError
from .interfaces import Address, IGossipTransport, IStreamSink, IStreamWriter, PacketHandler

log = Logger(namespace="wanfedtx.gossip.transport")

#: memberlist's ``udpPacketBufSize``.
UDP_RECV_BUF = 65536


@implementer(IStreamWriter)
class StreamProtocol(Protocol):
    """Drives one ``IStreamSink`` with a TCP (or TLS) connection."""

    def __init__(
        self, sink_factory: Callable[[], IStreamSink], owner: NetTransport | None = None
    ) -> None:
        self.sink_factory = sink_factory
        self.sink: IStreamSink | None = None
        self.owner = owner

    def connectionMade(self) -> None:
        if self.owner is not None:
            self.owner.connections.track(self)
        self.sink = self.sink_factory()
        self.sink.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.data_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.sink is not None:
            sink, self.sink = self.sink, None
            sink.connection_lost(None)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


class _UDP(DatagramProtocol):
    noisy = False

    def __init__(self, owner: NetTransport) -> None:
        self.owner = owner

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.owner.ingest_packet(datagram, (addr[0], addr[1]), self.owner.clock.seconds())


class _DialFactory(ClientFactory):
    def __init__(self, owner: NetTransport, sink: IStreamSink) -> None:
        self.owner = owner
        self.sink = sink

    def buildProtocol(self, addr: Any) -> Protocol:
        p = StreamProtocol(lambda: self.sink, self.owner)
        p.factory = self
        return p

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.sink.connection_lost(f"dial failed: {reason.getErrorMessage()}")


@implementer(IGossipTransport)
class NetTransport:
    """UDP and TCP listeners on one port (``bind_port`` 0 picks a free port for both)."""

    def __init__(
        self, reactor: ReactorLike, bind_addr: str = "127.0.0.1", bind_port: int = 0
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.bind_addr = bind_addr
        self.bind_port = bind_port
        self._packet_handler: PacketHandler | None = None
        self._stream_handler: Callable[[], IStreamSink] | None = None
        self._udp: IListeningPort | None = None
        self._tcp: DrainingEndpointService | None = None
        self.connections = Connections()
        self._closing = False

    def listen(self) -> int:
        """Bind UDP and TCP; return the port."""
        factory = Factory.forProtocol(lambda: StreamProtocol(self._new_sink, None))
        factory.noisy = False
        for _ in range(10):
            # Accepted streams are tracked by the listener (owner None: not twice).
            tcp = DrainingEndpointService(
                tcp_endpoint(self.reactor, self.bind_addr, self.bind_port), factory,
                connections=self.connections,
            )
            tcp.startService()
            port = bound_port(tcp.ports[0])
            try:
                udp = self.reactor.listenUDP(
                    port, _UDP(self), interface=self.bind_addr, maxPacketSize=UDP_RECV_BUF
                )
            except Exception:
                tcp.stopService()
                if self.bind_port:
                    raise
                continue
            self._tcp, self._udp = tcp, udp
            self.bind_port = port
            return int(port)
        raise GossipError("could not bind UDP and TCP on the same port; pick a port")

    def _new_sink(self) -> IStreamSink:
        if self._stream_handler is None:
            raise GossipError("stream received before a stream handler was set")
        return self._stream_handler()

    # IGossipTransport

    def set_handlers(
        self, packet_handler: PacketHandler, stream_handler: Callable[[], IStreamSink]
    ) -> None:
        self._packet_handler = packet_handler
        self._stream_handler = stream_handler

    def final_advertise_addr(self, ip: str, port: int) -> tuple[str, int]:
        if ip in ("", "0.0.0.0", "::"):
            ip = "127.0.0.1"
        return ip, port or self.bind_port

    def write_to_address(self, packet: bytes, address: Address) -> float:
        if self._udp is None:
            raise GossipError("transport is not listening")
        host, port = split_host_port(address.addr)
        self._udp.write(packet, (host, port))  # type: ignore[attr-defined]
        return self.clock.seconds()

    def dial_address(self, address: Address, sink: IStreamSink, timeout: float) -> None:
        host, port = split_host_port(address.addr)
        self.reactor.connectTCP(host, port, _DialFactory(self, sink), timeout=max(timeout, 0.001))

    def ingest_packet(self, packet: bytes, from_addr: tuple[str, int], timestamp: float) -> None:
        if self._packet_handler is not None and not self._closing:
            self._packet_handler(packet, from_addr, timestamp)

    def ingest_stream(self) -> IProtocol:
        return StreamProtocol(self._new_sink, self)

    def shutdown(self) -> Deferred[None]:
        """Stop both listeners and abort every stream; fires once every socket is closed."""
        self._closing = True
        ds: list[Deferred[Any]] = []
        if self._udp is not None:
            r = self._udp.stopListening()
            if isinstance(r, Deferred):
                ds.append(r)
        tcp, self._tcp, self._udp = self._tcp, None, None
        ds.append(tcp.stopService() if tcp is not None else self.connections.close_all())
        d: Deferred[Any] = defer.gatherResults(ds)
        return d.addCallback(lambda _: None)
