"""``/v1/internal/service-dump?kind=``: ``Internal.ServiceDump`` of one kind over a fake RPC."""

from __future__ import annotations

import json
from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed

from wanfedtx.http.common import APIContext
from wanfedtx.http.federation import FederationStateRoutes

BASE = "http://127.0.0.1:8500"


@attrs.define
class RPC:
    reply: dict[str, Any]
    calls: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)

    def __call__(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        self.calls.append((method, args))
        return succeed(self.reply)


def call(rpc: RPC, path: str) -> tuple[int, bytes, Any]:
    stub = StubTreq(FederationStateRoutes(APIContext("dc1", rpc)).app.resource())
    got: list[Any] = []
    stub.request("GET", BASE + path).addBoth(got.append)
    stub.flush()
    body: list[bytes] = []
    stub.content(got[0]).addCallback(body.append)
    stub.flush()
    return got[0].code, body[0], got[0].headers


def test_service_dump_of_a_kind_in_another_datacenter() -> None:
    node = {"Node": {"Node": "gw"}, "Service": {"Kind": "mesh-gateway"}, "Checks": []}
    rpc = RPC({"Nodes": [node], "Index": 9, "KnownLeader": True, "LastContact": 0})
    code, body, headers = call(rpc, "/v1/internal/service-dump?kind=mesh-gateway&dc=dc2&stale")
    assert code == 200 and json.loads(body) == [node]
    assert headers.getRawHeaders("X-Consul-Index") == ["9"]
    ((method, args),) = rpc.calls
    assert method == "Internal.ServiceDump"
    assert (args["Datacenter"], args["ServiceKind"], args["UseServiceKind"], args["AllowStale"]) \
        == ("dc2", "mesh-gateway", True, True)
    # nothing of that kind: an empty array, never null
    code, body, _ = call(RPC({"Nodes": None, "Index": 1}), "/v1/internal/service-dump?kind=x")
    assert (code, body) == (200, b"[]")


def test_service_dump_without_a_kind_is_refused() -> None:
    rpc = RPC({})
    assert call(rpc, "/v1/internal/service-dump")[:2] == (400, b"Missing service kind")
    assert call(rpc, "/v1/internal/service-dump?kind=&index=x")[:2] == (
        400, b"Missing service kind")
    assert call(rpc, "/v1/internal/service-dump?kind=k&index=x")[:2] == (400, b"Invalid index")
    assert rpc.calls == []
