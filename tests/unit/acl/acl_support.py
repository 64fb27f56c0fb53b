"""Helpers for the ACL unit tests: in-process datacenters, one single-server ``CatalogAgent``
per DC (``LocalConsensus``, ``task.Clock``) with its ``ACLServer``, joined by a forwarder that
msgpack-encodes requests and replies as the RPC layer does."""

from __future__ import annotations

import random
from typing import Any

import msgpack
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wanfedtx.aclserver.server import ACLServer
from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.federation.server import FederationServer
from wanfedtx.testing import FakeForwarder

MASTER = "6a1253d2-1785-24fd-91c2-f8e78c745511"


def _wire(value: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


class Net:
    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.servers: dict[str, CatalogAgent] = {}
        self.acls: dict[str, ACLServer] = {}
        self.down: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def add(self, dc: str, primary: str, **kw: Any) -> ACLServer:
        cat = CatalogAgent(
            node_name=f"server-{dc}",
            datacenter=dc,
            advertise_addr="127.0.0.1",
            server_port=8300,
            reactor=self.clock,
            services=[],
            forwarder=FakeForwarder(self.servers, down=self.down, calls=self.calls, wire=_wire),
            rng=random.Random(7),
        )
        kw.setdefault("enabled", True)
        kw.setdefault("default_policy", "deny")
        fed = kw.pop("federation", True)
        acl = ACLServer(cat, primary, **kw)
        acl.setServiceParent(cat)  # type: ignore[no-untyped-call]
        if fed:
            FederationServer(cat, primary).setServiceParent(cat)  # type: ignore[no-untyped-call]
        acl.guard(None)
        self.servers[dc] = cat
        self.acls[dc] = acl
        return acl

    def rpc(self, dc: str, method: str, args: dict[str, Any]) -> Any:
        return result(self.servers[dc].rpc(method, _wire(args)))


def result(d: Deferred[Any]) -> Any:
    out: list[Any] = []

    def keep(value: Any) -> Any:
        out.append(value)
        return None

    d.addBoth(keep)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]
