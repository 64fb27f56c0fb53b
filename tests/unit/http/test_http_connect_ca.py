"""``/v1/connect/ca/*`` and ``/v1/agent/connect/ca/*`` over a fake RPC (StubTreq, no
sockets): the roots shape, the leaf's CSR (SPIFFE ID of the agent's datacenter), and the
refusals (bad names, no CA yet, the signing rate limit)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import attrs
from cryptography import x509
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.web.resource import IResource

from wanfedtx.catalog.errors import EndpointError
from wanfedtx.connect import ca
from wanfedtx.http.common import APIContext
from wanfedtx.http.connect_ca import ConnectCARoutes

BASE = "http://127.0.0.1:8500"
TD = "11111111-2222-3333-4444-555555555555.consul"


def call(resource: IResource, path: str) -> tuple[int, bytes]:
    stub = StubTreq(resource)
    got: list[Any] = []
    stub.request("GET", BASE + path).addBoth(got.append)
    stub.flush()
    body: list[bytes] = []
    stub.content(got[0]).addCallback(body.append)
    stub.flush()
    return got[0].code, body[0]


@attrs.define
class RPC:
    replies: dict[str, Any]
    calls: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)

    def __call__(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        self.calls.append((method, args))
        reply = self.replies[method]
        return fail(reply) if isinstance(reply, Exception) else succeed(reply)


def routes(replies: dict[str, Any]) -> tuple[IResource, RPC]:
    rpc = RPC(replies)
    return ConnectCARoutes(APIContext("dc2", rpc)).app.resource(), rpc


ROOTS = {"ActiveRootID": "aa", "TrustDomain": TD, "Roots": [{"ID": "aa"}], "Index": 3,
         "KnownLeader": True, "LastContact": 0}


def test_roots_shape_and_empty_list() -> None:
    resource, rpc = routes({"ConnectCA.Roots": ROOTS})
    code, body = call(resource, "/v1/connect/ca/roots?dc=dc1")
    assert code == 200
    assert json.loads(body) == {"ActiveRootID": "aa", "TrustDomain": TD, "Roots": [{"ID": "aa"}]}
    assert rpc.calls[0][1]["Datacenter"] == "dc1"
    resource, rpc = routes({"ConnectCA.Roots": {"ActiveRootID": "", "TrustDomain": "",
                                                "Roots": None, "Index": 1}})
    code, body = call(resource, "/v1/agent/connect/ca/roots?dc=dc9")
    assert json.loads(body)["Roots"] == [] and rpc.calls[0][1]["Datacenter"] == "dc2"


def test_leaf_csr_names_the_agent_datacenter() -> None:
    _, pem = ca.generate_root("11111111-2222-3333-4444-555555555555", 8,
                              datetime.datetime.now(datetime.UTC))
    issued = {"SerialNumber": "08", "CertPEM": pem, "ModifyIndex": 8}
    resource, rpc = routes({"ConnectCA.Roots": ROOTS, "ConnectCA.Sign": issued})
    code, body = call(resource, "/v1/agent/connect/ca/leaf/web")
    assert code == 200
    reply = json.loads(body)
    assert reply["CertPEM"] == pem and "EC PRIVATE KEY" in reply["PrivateKeyPEM"]
    method, args = rpc.calls[1]
    assert method == "ConnectCA.Sign" and args["Datacenter"] == "dc2"
    csr = x509.load_pem_x509_csr(args["CSR"].encode())
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{TD}/ns/default/dc/dc2/svc/web"]


def test_leaf_refusals() -> None:
    resource, rpc = routes({"ConnectCA.Roots": ROOTS})
    code, body = call(resource, "/v1/agent/connect/ca/leaf/a%20b")
    assert code == 400 and body.startswith(b"Invalid service")
    assert rpc.calls == []
    resource, _ = routes({"ConnectCA.Roots": {**ROOTS, "TrustDomain": "", "Roots": []}})
    assert call(resource, "/v1/agent/connect/ca/leaf/web") == (
        500, b"cluster has no CA bootstrapped yet")
    limited = EndpointError("Rate limit reached, try again later")
    resource, _ = routes({"ConnectCA.Roots": ROOTS, "ConnectCA.Sign": limited})
    assert call(resource, "/v1/agent/connect/ca/leaf/web") == (
        429, b"Rate limit reached, try again later")
