# -*- test-case-name: tests.unit.wanfed.test_wanfed_framing -*-
"""Constants of the wanfed transport."""

from __future__ import annotations

from typing import Final

from wanfedtx.rpc.constants import ALPN_WAN_GOSSIP_PACKET, ALPN_WAN_GOSSIP_STREAM

#: ``GossipPacketMaxIdleTime``: idle lifetime of pooled packet connections, and how long the
#: receiver waits for the next frame header.
GOSSIP_PACKET_MAX_IDLE_TIME: Final = 120.0
#: ``GossipPacketMaxByteSize``: the largest frame the receiver accepts.
GOSSIP_PACKET_MAX_BYTE_SIZE: Final = 4 * 1024 * 1024
#: Size of the big-endian unsigned length prefix of every packet frame.
FRAME_HEADER_SIZE: Final = 4
#: How often the packet pool closes idle connections.
POOL_REAP_INTERVAL: Final = 1.0
#: The fixed dial timeout (TCP connect + TLS handshake) of gateway dials; memberlist's own stream
#: timeout is ignored for these, as in the reference.
DIAL_TIMEOUT: Final = 10.0
#: Packets that may wait for one connection being dialed (ours; the reference blocks instead).
MAX_PENDING_PACKETS: Final = 256

__all__ = [
    "ALPN_WAN_GOSSIP_PACKET",
    "ALPN_WAN_GOSSIP_STREAM",
    "DIAL_TIMEOUT",
    "FRAME_HEADER_SIZE",
    "GOSSIP_PACKET_MAX_BYTE_SIZE",
    "GOSSIP_PACKET_MAX_IDLE_TIME",
    "MAX_PENDING_PACKETS",
    "POOL_REAP_INTERVAL",
]
