"""Test support for the gateway relay on fake transports: a RelayFactory on a fake reactor and
clock, a downstream connection from a given peer address, and the routes of a test cluster."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import address
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection

from wanfedtx.gateway.relay import DownstreamProtocol, RelayFactory, RelaySettings
from wanfedtx.gateway.router import RouteTable
from wanfedtx.gateway.routes import Snapshot
from wanfedtx.gateway.stats import GatewayStats


def cluster_c() -> dict[str, Any]:
    """Routes JSON of cluster ``c``: 10.0.0.1:1 and 10.0.0.2:2 healthy, 10.0.0.3:3 unhealthy,
    a 2.5 s connect timeout."""
    return {
        "name": "c",
        "connect_timeout_ms": 2500,
        "endpoints": [
            {"address": "10.0.0.1", "port": 1},
            {"address": "10.0.0.2", "port": 2},
            {"address": "10.0.0.3", "port": 3, "health": "UNHEALTHY"},
        ],
    }


def relay_factory(
    snap: Snapshot, settings: RelaySettings, rng: random.Random | None = None
) -> tuple[MemoryReactorClock, RelayFactory]:
    """A relay listening (in its stats) on 127.0.0.1:4431, routing by `snap`."""
    reactor = MemoryReactorClock()
    stats = GatewayStats()
    f = RelayFactory(
        reactor,
        RouteTable(snap),
        stats,
        stats.listener("127.0.0.1", 4431),
        settings,
        rng,
    )
    return reactor, f


def connect_from(
    f: RelayFactory, peer: address.IPv4Address
) -> tuple[DownstreamProtocol, StringTransportWithDisconnection]:
    """A downstream connection from `peer`, made on a fake transport."""
    p = f.buildProtocol(peer)
    assert isinstance(p, DownstreamProtocol)
    t = StringTransportWithDisconnection(peerAddress=peer)
    t.protocol = p
    p.makeConnection(t)
    return p, t
