# -*- test-case-name: tests.unit.rpc.test_rpc_dial,tests.unit.rpc.test_rpc_fuzz -*-
"""Constants of the :8300 port: first-byte RPC types, ALPN names, timings."""

from __future__ import annotations

import enum
from typing import Final


class RPCType(enum.IntEnum):
    """The first byte of a legacy (non native-TLS) connection on the RPC port."""

    CONSUL = 0
    RAFT = 1
    MULTIPLEX = 2  # old muxado; unsupported
    TLS = 3
    MULTIPLEX_V2 = 4
    SNAPSHOT = 5
    GOSSIP = 6
    TLS_INSECURE = 7

    def alpn_string(self) -> str:
        """The ALPN name carrying this type natively, or "" when it has none."""
        return _ALPN_BY_TYPE.get(self, "")


# Any first byte above this is the start of a real TLS record (content type >= 20).
RPC_MAX_TYPE_VALUE: Final = 7

ALPN_RPC_CONSUL: Final = "consul/rpc-single"
ALPN_RPC_RAFT: Final = "consul/raft"
ALPN_RPC_MULTIPLEX_V2: Final = "consul/rpc-multi"
ALPN_RPC_SNAPSHOT: Final = "consul/rpc-snapshot"
ALPN_RPC_GOSSIP: Final = "consul/rpc-gossip"
ALPN_WAN_GOSSIP_PACKET: Final = "consul/wan-gossip/packet"
ALPN_WAN_GOSSIP_STREAM: Final = "consul/wan-gossip/stream"

_ALPN_BY_TYPE: dict[RPCType, str] = {
    RPCType.CONSUL: ALPN_RPC_CONSUL,
    RPCType.RAFT: ALPN_RPC_RAFT,
    RPCType.MULTIPLEX_V2: ALPN_RPC_MULTIPLEX_V2,
    RPCType.SNAPSHOT: ALPN_RPC_SNAPSHOT,
    RPCType.GOSSIP: ALPN_RPC_GOSSIP,
}

# The protocols the server offers in native TLS, in the reference's order.
RPC_NEXT_PROTOS: Final[tuple[str, ...]] = (
    ALPN_RPC_CONSUL,
    ALPN_RPC_RAFT,
    ALPN_RPC_MULTIPLEX_V2,
    ALPN_RPC_SNAPSHOT,
    ALPN_RPC_GOSSIP,
    ALPN_WAN_GOSSIP_PACKET,
    ALPN_WAN_GOSSIP_STREAM,
)

# limits.rpc_handshake_timeout default: covers the first-byte peek and the native TLS handshake.
DEFAULT_RPC_HANDSHAKE_TIMEOUT: Final = 5.0
# limits.rpc_max_conns_per_client default: concurrent :8300 conns per source IP (0 = no limit).
DEFAULT_RPC_MAX_CONNS_PER_CLIENT: Final = 100
# pool defaultDialTimeout (also the snapshot dial timeout).
DEFAULT_DIAL_TIMEOUT: Final = 10.0
# serverRPCCache: idle pooled server connections are closed after this long.
DEFAULT_POOL_MAX_IDLE: Final = 120.0
# How often the pool looks for idle connections.
POOL_REAP_INTERVAL: Final = 1.0
# Unanswered calls per server connection before it stops reading (back-pressure; yamux's
# AcceptBacklog is 256 too).
MAX_PENDING_CALLS: Final = 256
# Largest RPC frame (request or response body) accepted by the codec, in bytes.
DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
# Bytes of unfinished request frames held across every connection of one RPC port: a peer that
# declares large frames and sends them slowly over many connections cannot hold more.
DEFAULT_PARTIAL_BUDGET: Final = 64 * 1024 * 1024
