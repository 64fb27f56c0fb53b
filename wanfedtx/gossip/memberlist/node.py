# -*- test-case-name: tests.unit.gossip -*-
"""memberlist node state as the core holds it, the view handed to delegates, the delegate
hooks, address helpers and the scaling formulas (suspicion timeout, retransmit limit, push/pull)."""

from __future__ import annotations

import ipaddress
import math

import attrs
from twisted.logger import Logger

from wanfedtx.hostport import format_host

from .. import wire
from ..errors import JoinError
from ..interfaces import Address
from ..wire import NodeStateType

#: one namespace for every module of the package (tests and operators filter on it)
log = Logger(namespace="wanfedtx.gossip.memberlist")

MAX_PUSH_PULL_REQUESTS = 128
PUSH_PULL_SCALE_THRESHOLD = 32


# ------------------------------------------------------------------------------------------
# Node state and delegates


@attrs.define(eq=False)
class Node:
    """A member as the core knows it."""

    name: str
    addr: bytes
    port: int
    meta: bytes = b""
    incarnation: int = 0
    state: NodeStateType = NodeStateType.DEAD
    state_change: float = 0.0
    vsn: bytes = b"\x00" * 6

    @property
    def ip(self) -> str:
        return ip_string(self.addr)

    def address(self) -> Address:
        return Address(f"{format_host(self.ip)}:{self.port}", self.name)

    @property
    def pmax(self) -> int:
        return wire.vsn_tuple(self.vsn)[1]

    def dead_or_left(self) -> bool:
        return self.state in (NodeStateType.DEAD, NodeStateType.LEFT)

    def snapshot(self) -> NodeInfo:
        return NodeInfo(
            self.name, self.ip, self.port, self.meta, self.incarnation, self.state, self.vsn
        )


@attrs.frozen
class NodeInfo:
    """An immutable view of a member handed to delegates and callers."""

    name: str
    addr: str
    port: int
    meta: bytes
    incarnation: int
    state: NodeStateType
    vsn: bytes


class Delegate:
    """Hooks for the layer above (serf); every method has a harmless default."""

    def node_meta(self, limit: int) -> bytes:
        return b""

    def notify_msg(self, data: bytes) -> None:
        pass

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, buf: bytes, join: bool) -> None:
        pass

    def notify_join(self, node: NodeInfo) -> None:
        pass

    def notify_leave(self, node: NodeInfo) -> None:
        pass

    def notify_update(self, node: NodeInfo) -> None:
        pass

    def ack_payload(self) -> bytes:
        return b""

    def notify_ping_complete(self, node: NodeInfo, rtt: float, payload: bytes) -> None:
        pass

    def notify_merge(self, peers: list[NodeInfo]) -> str | None:
        """Return an error string to refuse a push/pull merge (serf's MergeDelegate)."""
        return None

    def notify_alive(self, node: NodeInfo) -> str | None:
        """Return an error string to ignore an alive message (memberlist's AliveDelegate)."""
        return None


def ip_string(addr: bytes) -> str:
    if len(addr) == 4:
        return str(ipaddress.IPv4Address(addr))
    if len(addr) == 16:
        v6 = ipaddress.IPv6Address(addr)
        return str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)
    return ""


def ip_bytes(ip: str) -> bytes:
    a = ipaddress.ip_address(ip)
    return a.packed


def parse_join_address(spec: str, default_port: int) -> Address:
    """``[name/]host[:port]`` -> ``Address`` with an IP host (memberlist 0.2.2 join syntax)."""
    name = ""
    if "/" in spec:
        name, _, spec = spec.partition("/")
        if not name:
            raise JoinError("empty node name provided")
    host, port = spec, default_port
    if spec.startswith("["):
        h, _, rest = spec[1:].partition("]")
        host = h
        if rest.startswith(":"):
            port = int(rest[1:])
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise JoinError(f"join address {host!r} is not an IP address; use ip[:port]") from None
    return Address(f"{format_host(host)}:{port}", name)


def suspicion_timeout(suspicion_mult: int, n: int, interval: float) -> float:
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return suspicion_mult * math.floor(node_scale * 1000) / 1000 * interval


def retransmit_limit(mult: int, n: int) -> int:
    return mult * math.ceil(math.log10(n + 1))


def push_pull_scale(interval: float, n: int) -> float:
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    return (math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1.0) * interval
