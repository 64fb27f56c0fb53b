"""Fixture: the state-backed /v1 HTTP API served on 127.0.0.1 by a single in-memory server.

A ``CatalogAgent`` (FSM + ``LocalConsensus`` + RPC endpoints + local services, checks and
anti-entropy) with its Klein routes, listening on an ephemeral loopback port; dc1's agent has the
``case-wanfed-gw`` mesh gateway from config. ``forwarder`` knows one extra datacenter ("dc2")
whose requests are served by a second, independent server, so ``?dc=`` forwarding and
"No path to datacenter" can both be exercised.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest_twisted
from twisted.web.server import Site

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.http.app import API as HTTPAPI
from wanfedtx.http.parking import APIRequest
from wanfedtx.http.routes import server_families
from wanfedtx.testing import FakeForwarder


def make_server(
    dc: str, reactor: Any, forwarder: FakeForwarder, services: list[Any]
) -> CatalogAgent:
    return CatalogAgent(
        node_name=f"server-{dc}",
        datacenter=dc,
        advertise_addr="127.0.0.1",
        server_port=8300,
        reactor=reactor,
        services=services,
        forwarder=forwarder,
        rng=random.Random(7),
        ae_interval=5.0,
    )


@attrs.define
class API:
    url: str
    port: int
    server: CatalogAgent
    other: CatalogAgent
    site: Site


@pytest_twisted.async_yield_fixture
async def state_api(reactor: Any) -> AsyncIterator[API]:
    servers: dict[str, CatalogAgent] = {}
    forwarder = FakeForwarder(servers)
    gateway = {
        "name": "mesh-gateway",
        "kind": "mesh-gateway",
        "port": 4431,
        "meta": {"consul-wan-federation": "1"},
    }
    servers["dc1"] = make_server("dc1", reactor, forwarder, [gateway])
    servers["dc2"] = make_server("dc2", reactor, forwarder, [])
    for server in servers.values():
        server.startService()
    api = HTTPAPI(server_families(servers["dc1"]))
    site = Site(api.resource(), requestFactory=APIRequest)
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        n = port.getHost().port
        yield API(f"http://127.0.0.1:{n}", n, servers["dc1"], servers["dc2"], site)
    finally:
        await port.stopListening()
        for server in servers.values():
            await server.stopService()
