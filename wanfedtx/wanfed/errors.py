# -*- test-case-name: tests.unit.wanfed.test_wanfed_framing,tests.unit.wanfed.test_wanfed_pool -*-
"""Exceptions of the wanfed package; the reference's exact messages where it has them.

They derive from ``GossipError`` because the memberlist core catches that around every transport
call (a failed send is logged, never raised into the gossip loops).
"""

from __future__ import annotations

from wanfedtx.gossip.errors import GossipError


class WanfedError(GossipError):
    """Base class of every wanfed error."""


class ConfigurationError(WanfedError):
    """The transport or pool was built without a required part."""


class DCNotAvailable(WanfedError):
    """No mesh gateway is known for the target datacenter (``structs.ErrDCNotAvailable``)."""

    def __init__(self) -> None:
        super().__init__("Remote DC has no server currently reachable")


class OutgoingTLSDisabled(WanfedError):
    """This server has no CA + certificate, so it cannot dial through a gateway."""

    def __init__(self) -> None:
        super().__init__("wanfed: cannot dial via a mesh gateway when outgoing TLS is disabled")


class PoolClosed(WanfedError):
    """The packet connection pool was shut down."""

    def __init__(self) -> None:
        super().__init__("wanfed: connection pool is closed")


class PacketQueueFull(WanfedError):
    """Too many packets wait for the connection being dialed to one node; this one is dropped."""


class FrameError(WanfedError):
    """A received packet frame is invalid; the connection carrying it is closed (the decoder
    reports it as a value, ``FrameDecoder.failed``, after the frames before it)."""


class FrameTooLarge(FrameError):
    """A frame announced more than ``GossipPacketMaxByteSize`` bytes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"gossip packet size {size} exceeds threshold of {limit}")
        self.size = size
        self.limit = limit


class PacketTooShort(FrameError):
    """A frame carried no bytes (memberlist's ``IngestPacket`` check)."""

    def __init__(self, size: int, addr: str) -> None:
        super().__init__(f"packet too short ({size} bytes) {addr}")
