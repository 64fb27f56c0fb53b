"""How the HTTP API answers a client agent's RPC errors: ``No known Consul servers`` and
wrapped server errors are 500s with the text, ``RPC rate limit exceeded`` a 429 with an empty
body (as Consul's HTTP layer)."""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail

from wanfedtx.client.errors import ClientRPCError, NoServers, RateExceeded
from wanfedtx.http.common import APIContext
from wanfedtx.http.kv import KVRoutes
from wanfedtx.http.status import StatusRoutes


def answer(resource: Any, method: str, path: str) -> tuple[int, bytes]:
    stub = StubTreq(resource)
    got: list[Any] = []
    stub.request(method, "http://127.0.0.1:8500" + path, data=b"v").addBoth(got.append)
    stub.flush()
    body: list[bytes] = []
    stub.content(got[0]).addCallback(body.append)
    stub.flush()
    return got[0].code, body[0]


def failing(exc: Exception) -> APIContext:
    def rpc(method: str, args: dict[str, Any]) -> Deferred[Any]:
        return fail(exc)

    return APIContext("dc1", rpc)


def test_client_rpc_errors_map_to_consuls_status_codes() -> None:
    status = StatusRoutes(failing(NoServers())).app.resource()
    assert answer(status, "GET", "/v1/status/leader") == (500, b"No known Consul servers")
    kv = KVRoutes(failing(RateExceeded())).app.resource()
    assert answer(kv, "PUT", "/v1/kv/x") == (429, b"")
    assert answer(kv, "GET", "/v1/kv/x") == (429, b"")
    wrapped = KVRoutes(failing(ClientRPCError("rpc error making call: No cluster leader")))
    assert answer(wrapped.app.resource(), "GET", "/v1/kv/x") == (
        500, b"rpc error making call: No cluster leader")
