# -*- test-case-name: tests.unit.gossip.test_gossip_memberlist -*-
"""The gossip transport seam (memberlist's NodeAwareTransport + IngestionAwareTransport).

The memberlist core never touches sockets: it hands packets to ``IGossipTransport.write_to_address``
and drives stream exchanges as ``IStreamSink`` objects connected by ``dial_address``. The plain
UDP/TCP transport (``transport.NetTransport``) implements this; the wanfed transport wraps it and
routes names of other datacenters through mesh gateways, feeding what it receives back in with
``ingest_packet`` / ``ingest_stream``.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol
from zope.interface import Interface


@attrs.frozen
class Address:
    """memberlist ``Address``: ``addr`` is ``"host:port"``; ``name`` the target node (may be "")."""

    addr: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.addr})" if self.name else self.addr


PacketHandler = Callable[[bytes, tuple[str, int], float], None]


class IStreamWriter(Interface):
    """The byte pipe under a stream exchange."""

    def write(data: bytes) -> None:
        """Send bytes to the peer."""

    def close() -> None:
        """Close the connection (after pending writes)."""


class IStreamSink(Interface):
    """One side of a memberlist stream exchange (sans-IO; the transport drives it)."""

    def connection_made(writer: IStreamWriter) -> None:
        """The connection is up; ``writer`` sends bytes."""

    def data_received(data: bytes) -> None:
        """Bytes arrived from the peer."""

    def connection_lost(reason: str | None) -> None:
        """The connection ended (``reason`` None for a clean close) or could not be made."""


class IGossipTransport(Interface):
    """Packets and streams for memberlist, addressed by ``Address`` (with node names)."""

    def set_handlers(
        packet_handler: PacketHandler, stream_handler: Callable[[], IStreamSink]
    ) -> None:
        """Register where received packets (bytes, (host, port), time) and streams go."""

    def final_advertise_addr(ip: str, port: int) -> tuple[str, int]:
        """The address and port other nodes should use to reach us."""

    def write_to_address(packet: bytes, address: Address) -> float:
        """Send one packet; return the send time."""

    def dial_address(address: Address, sink: IStreamSink, timeout: float) -> None:
        """Open a stream to ``address`` and drive ``sink`` (``connection_lost`` on error)."""

    def ingest_packet(packet: bytes, from_addr: tuple[str, int], timestamp: float) -> None:
        """Feed a packet received out of band (e.g. tunnelled through a gateway)."""

    def ingest_stream() -> IProtocol:
        """A protocol to attach to a stream received out of band; it feeds the stream handler."""

    def shutdown() -> Deferred[None]:
        """Stop listening and close connections; fires when sockets are closed."""
