"""Fixture: the state-backed /v1 HTTP API served on 127.0.0.1 by a single in-memory server.

FSM + ``LocalConsensus`` + RPC endpoints + the Klein routes, listening on an ephemeral loopback
port. ``forwarder`` knows one extra datacenter ("dc2") whose requests are served by a second,
independent server, so ``?dc=`` forwarding and "No path to datacenter" can both be exercised.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest_twisted
from klein import Klein
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web.server import Site

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.catalog.errors import NoPathToDatacenterError
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.http.common import APIContext
from wanfedtx.http.routes import install_error_handlers, mount_state_routes


@attrs.define
class Server:
    dc: str
    fsm: FSM
    consensus: LocalConsensus
    endpoints: Endpoints
    handlers: dict[str, Any]

    def rpc(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        return maybeDeferred(self.handlers[method], args)


class Forwarder:
    def __init__(self, servers: dict[str, Server]) -> None:
        self.servers = servers

    def datacenters(self) -> list[str]:
        return sorted(self.servers)

    def forward_dc(self, dc: str, method: str, args: dict[str, Any]) -> Deferred[Any]:
        if dc not in self.servers:
            raise NoPathToDatacenterError(dc)
        return self.servers[dc].rpc(method, args)

    def forward_leader(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        raise AssertionError("single-server test datacenters always have a leader")


def make_server(dc: str, reactor: Any, forwarder: Forwarder) -> Server:
    fsm = FSM()
    consensus = LocalConsensus(fsm, "127.0.0.1:8300")
    endpoints = Endpoints(dc, fsm.state, consensus, reactor, random.Random(7), forwarder)
    return Server(dc, fsm, consensus, endpoints, endpoints.handlers())


@attrs.define
class API:
    url: str
    port: int
    server: Server
    other: Server
    ctx: APIContext


@pytest_twisted.async_yield_fixture
async def state_api(reactor: Any) -> AsyncIterator[API]:
    servers: dict[str, Server] = {}
    forwarder = Forwarder(servers)
    servers["dc1"] = make_server("dc1", reactor, forwarder)
    servers["dc2"] = make_server("dc2", reactor, forwarder)
    ctx = APIContext(datacenter="dc1", rpc=servers["dc1"].rpc)
    app = Klein()
    mount_state_routes(app, ctx)
    install_error_handlers(app)
    site = Site(app.resource())
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        n = port.getHost().port
        yield API(f"http://127.0.0.1:{n}", n, servers["dc1"], servers["dc2"], ctx)
    finally:
        await port.stopListening()
