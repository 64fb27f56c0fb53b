"""Helpers for federation-state tests: in-process datacenters, one single-server
``CatalogAgent`` per DC (``LocalConsensus``, ``task.Clock``) with its ``FederationServer``,
joined by a forwarder that msgpack-encodes requests and replies as the RPC layer does."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import msgpack
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.federation.server import FederationServer
from wanfedtx.testing import FakeForwarder


def _wire(value: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


class Net:
    """Datacenters by name; ``down`` holds the ones whose forwarding fails."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.servers: dict[str, CatalogAgent] = {}
        self.feds: dict[str, FederationServer] = {}
        self.down: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def forwarder(self, here: str) -> FakeForwarder:
        return FakeForwarder(self.servers, down=self.down, calls=self.calls, wire=_wire)

    def add(
        self,
        dc: str,
        primary: str,
        services: list[Any] | None = None,
        make: Callable[[CatalogAgent, str], FederationServer] | None = None,
    ) -> FederationServer:
        cat = CatalogAgent(
            node_name=f"server-{dc}",
            datacenter=dc,
            advertise_addr="127.0.0.1",
            server_port=8300,
            reactor=self.clock,
            services=services or [],
            forwarder=self.forwarder(dc),
            rng=random.Random(7),
        )
        fed = make(cat, primary) if make is not None else FederationServer(cat, primary)
        fed.setServiceParent(cat)  # type: ignore[no-untyped-call]
        self.servers[dc] = cat
        self.feds[dc] = fed
        return fed



def gateway(
    node: str, addr: str, port: int, status: str = "passing", dc: str = "dc1"
) -> dict[str, Any]:
    """A mesh-gateway CheckServiceNode in wire shape."""
    return {
        "Node": {"Node": node, "Address": addr, "Datacenter": dc},
        "Service": {
            "Kind": "mesh-gateway",
            "ID": "mesh-gateway",
            "Service": "mesh-gateway",
            "Port": port,
            "Meta": {"consul-wan-federation": "1"},
        },
        "Checks": [{"Node": node, "CheckID": "gw", "Name": "gw", "Status": status}],
    }


def result(d: Deferred[Any]) -> Any:
    """The result of a Deferred that has fired (raises its failure)."""
    out: list[Any] = []

    def keep(value: Any) -> Any:
        out.append(value)
        return None if isinstance(value, Failure) else value

    d.addBoth(keep)
    assert out, "the Deferred has not fired"
    value = out[0]
    if isinstance(value, Failure):
        value.raiseException()
    return value
