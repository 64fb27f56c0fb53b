# -*- test-case-name: tests.unit.wanfed.test_wanfed_framing -*-
"""Ingestion of tunnelled WAN gossip on the receiving server's RPC port.

Two ``IRPCHandler``s for the native-TLS ALPN dispatch of the :8300 port:

* ``consul/wan-gossip/packet`` (``PacketIngestProtocol``): a loop of frames (4-byte big-endian
  length + packet). The wait for each frame header is bounded by 2 min (an idle peer is dropped);
  a frame body has no deadline. Each packet is handed to the WAN transport's ``ingest_packet``
  with the TCP peer address (usually the mesh gateway: memberlist replies by the ``Source*``
  fields and node names, not to this address). A frame over 4 MiB, an empty frame or the idle
  timeout logs ``failed to ingest RPC`` and closes the connection; the connection is always closed
  when the loop ends.
* ``consul/wan-gossip/stream``: the connection goes to the WAN transport's ``ingest_stream``
  protocol, which runs one memberlist stream exchange and closes it.

The handlers find the WAN transport through a getter: while the WAN pool is not running (or the
server is shutting down) tunnelled connections are closed at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.gossip.interfaces import IGossipTransport
from wanfedtx.hostport import join_host_port
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.interfaces import ConnectionInfo
from wanfedtx.rpc.registry import HandlerRegistry

from .constants import (
    ALPN_WAN_GOSSIP_PACKET,
    ALPN_WAN_GOSSIP_STREAM,
    GOSSIP_PACKET_MAX_BYTE_SIZE,
    GOSSIP_PACKET_MAX_IDLE_TIME,
)
from .errors import PacketTooShort
from .framing import FrameDecoder

log = Logger(namespace="wanfedtx.rpc")

MSG_FAILED_TO_INGEST = "failed to ingest RPC"

TransportGetter = Callable[[], IGossipTransport | None]


def _peer(transport: Any) -> tuple[str, int]:
    try:
        p = transport.getPeer()
        return str(p.host), int(p.port)
    except Exception:
        return "", 0




class PacketIngestProtocol(Protocol):
    """Server side of one ``consul/wan-gossip/packet`` connection (module docstring)."""

    def __init__(
        self,
        get_transport: TransportGetter,
        clock: IReactorTime,
        idle_timeout: float = GOSSIP_PACKET_MAX_IDLE_TIME,
        max_size: int = GOSSIP_PACKET_MAX_BYTE_SIZE,
        peer_log: RateLimitedLog | None = None,
    ) -> None:
        self.get_transport = get_transport
        self.clock = clock
        # shared by every connection of a handler, so N bad peers write a bounded number of lines
        self.peer_log = peer_log if peer_log is not None else RateLimitedLog(log, clock)
        self.idle_timeout = idle_timeout
        self.decoder = FrameDecoder(max_size)
        self._timer: IDelayedCall | None = None
        self._done = False
        self.peer: tuple[str, int] = ("", 0)
        self.packets = 0

    def connectionMade(self) -> None:
        self.peer = _peer(self.transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        if self.idle_timeout > 0:
            self._timer = self.clock.callLater(self.idle_timeout, self._idle)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _idle(self) -> None:
        self._timer = None
        self._fail(
            "idle",
            f"read tcp {join_host_port(*self.peer)}: i/o timeout waiting for the next gossip "
            f"packet after {self.idle_timeout:g}s",
        )

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        was_header = self.decoder.awaiting_header
        frames = self.decoder.feed(data)
        error = self.decoder.failed
        for frame in frames:
            transport = self.get_transport()
            if transport is None:  # the server is shutting down: return quietly
                self._close()
                return
            if not frame:
                self._fail("empty-frame", str(PacketTooShort(0, join_host_port(*self.peer))))
                return
            self.packets += 1
            transport.ingest_packet(frame, self.peer, self.clock.seconds())
            if self._done:
                return
        if error is not None:
            self._fail("bad-frame", str(error))
            return
        if not self.decoder.awaiting_header:
            self._disarm()  # a frame body has no deadline
        elif frames or not was_header:
            self._arm()  # a new header wait begins

    def _fail(self, reason: str, error: str) -> None:
        # Consul's line with its fields after it, as hclog prints them
        self.peer_log.error(
            reason, MSG_FAILED_TO_INGEST + ": protocol={protocol} error={error} conn={conn}",
            error=error, conn=join_host_port(*self.peer), protocol=ALPN_WAN_GOSSIP_PACKET,
        )
        self._close()

    def _close(self) -> None:
        self._done = True
        self._disarm()
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._done = True
        self._disarm()


class _CloseAtOnce(Protocol):
    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


@attrs.define
class PacketHandler:
    """``IRPCHandler`` for ``consul/wan-gossip/packet``: its settings go to each connection's
    :class:`PacketIngestProtocol`."""

    get_transport: TransportGetter
    clock: IReactorTime
    idle_timeout: float = GOSSIP_PACKET_MAX_IDLE_TIME
    max_size: int = GOSSIP_PACKET_MAX_BYTE_SIZE
    peer_log: RateLimitedLog | None = None

    def __attrs_post_init__(self) -> None:
        if self.peer_log is None:
            self.peer_log = RateLimitedLog(log, self.clock)

    def build_protocol(self, conn: ConnectionInfo) -> IProtocol:
        if self.get_transport() is None:
            return _CloseAtOnce()
        return PacketIngestProtocol(self.get_transport, self.clock, self.idle_timeout,
                                    self.max_size, self.peer_log)


class StreamHandler:
    """``IRPCHandler`` for ``consul/wan-gossip/stream``: the WAN transport's stream protocol."""

    def __init__(self, get_transport: TransportGetter) -> None:
        self.get_transport = get_transport

    def build_protocol(self, conn: ConnectionInfo) -> IProtocol:
        transport = self.get_transport()
        if transport is None:
            return _CloseAtOnce()
        return transport.ingest_stream()


def register_ingestion(
    registry: HandlerRegistry, get_transport: TransportGetter, clock: IReactorTime
) -> None:
    """Register both wanfed ALPN handlers on an RPC port's registry."""
    registry.register_alpn(ALPN_WAN_GOSSIP_PACKET, PacketHandler(get_transport, clock))
    registry.register_alpn(ALPN_WAN_GOSSIP_STREAM, StreamHandler(get_transport))
