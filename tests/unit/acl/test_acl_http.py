"""/v1/acl/* through StubTreq over in-process ACL endpoints: status codes and bodies as Consul's
(401 when ACLs are off, 403 Permission denied / ACL not found, 400 with the message), the
deprecated ID of the bootstrap reply, case-insensitive fields, the default token."""

from __future__ import annotations

import json
from typing import Any

from acl_support import MASTER, Net
from treq.testing import StubTreq
from twisted.internet import task

from wanfedtx.http.acl import ACLRoutes
from wanfedtx.http.common import APIContext
from wanfedtx.http.kv import KVRoutes


def call(
    net: Net, method: str, path: str, token: str = "", body: Any = None, default_token: str = ""
) -> tuple[int, bytes, Any]:
    ctx = APIContext("dc1", net.servers["dc1"].rpc, default_token=default_token)
    family = KVRoutes(ctx) if path.startswith("/v1/kv") else ACLRoutes(ctx)
    stub = StubTreq(family.app.resource())
    headers = {"X-Consul-Token": token} if token else {}
    data = (
        body
        if isinstance(body, bytes)
        else (json.dumps(body).encode() if body is not None else None)
    )
    got: list[Any] = []
    stub.request(method, "http://127.0.0.1" + path, data=data, headers=headers).addBoth(got.append)
    stub.flush()
    response = got[0]
    content: list[bytes] = []
    stub.content(response).addCallback(content.append)
    stub.flush()
    return response.code, content[0], response.headers


def started(**kw: Any) -> Net:
    net = Net(task.Clock())
    net.add("dc1", "dc1", **kw)
    net.servers["dc1"].startService()
    return net


def test_acl_routes_answer_401_when_disabled() -> None:
    net = started(enabled=False)
    for method, path in (
        ("PUT", "/v1/acl/bootstrap"),
        ("GET", "/v1/acl/policies"),
        ("GET", "/v1/acl/token/self"),
        ("PUT", "/v1/acl/token"),
    ):
        code, body, _ = call(net, method, path)
        assert (code, body) == (401, b"ACL support disabled")


def test_bootstrap_reply_and_refusal() -> None:
    net = started()
    code, body, _ = call(net, "PUT", "/v1/acl/bootstrap", body={})
    tok = json.loads(body)
    assert code == 200 and tok["ID"] == tok["SecretID"]
    code, body, _ = call(net, "PUT", "/v1/acl/bootstrap")
    assert code == 403 and body.startswith(b"Permission denied: ACL bootstrap no longer allowed")


def test_policy_and_token_codes() -> None:
    net = started(initial_management=MASTER)
    assert call(net, "GET", "/v1/acl/policies")[:2] == (403, b"Permission denied")
    code, body, _ = call(
        net, "PUT", "/v1/acl/policy", MASTER, {"name": "p", "rules": 'acl = "read"'}
    )
    pol = json.loads(body)
    assert code == 200 and pol["Name"] == "p"
    assert call(net, "PUT", "/v1/acl/policy", MASTER, {"ID": pol["ID"], "Name": "q"})[:2] == (
        400,
        b"Cannot specify the ID when creating a new policy",
    )
    assert call(net, "PUT", f"/v1/acl/policy/{pol['ID']}", MASTER, {"ID": "x", "Name": "q"})[
        :2
    ] == (400, b"Policy ID in URL and payload do not match")
    code, body, _ = call(net, "PUT", "/v1/acl/policy", MASTER, {"Name": "bad", "Rules": "key {"})
    assert code == 400 and body.startswith(b"Failed to parse ACL rules: ")
    assert call(net, "PUT", "/v1/acl/policy", MASTER, b"{nope")[0] == 400
    missing = "6a1253d2-0000-4000-8000-000000000000"
    assert call(net, "GET", f"/v1/acl/policy/{missing}", MASTER)[:2] == (403, b"ACL not found")
    assert call(net, "GET", "/v1/acl/policy/name/p", MASTER)[0] == 200
    code, body, _ = call(net, "PUT", "/v1/acl/token", MASTER, {"policies": [{"name": "p"}]})
    tok = json.loads(body)
    assert code == 200 and tok["Policies"][0]["Name"] == "p"
    code, body, _ = call(net, "GET", f"/v1/acl/token/{tok['AccessorID']}", tok["SecretID"])
    assert code == 200 and json.loads(body)["SecretID"] == "<hidden>"
    assert call(net, "GET", f"/v1/acl/token/{missing}", MASTER)[:2] == (403, b"ACL not found")
    assert call(net, "GET", "/v1/acl/token/self", "not-a-token")[:2] == (403, b"ACL not found")
    assert call(net, "GET", "/v1/acl/token/self", "manage")[:2] == (400, b"Cannot resolve root ACL")
    code, body, _ = call(net, "GET", "/v1/acl/tokens", MASTER)
    assert code == 200 and all("SecretID" not in t for t in json.loads(body))
    assert call(net, "DELETE", f"/v1/acl/token/{tok['AccessorID']}", MASTER)[:2] == (200, b"true")
    status = json.loads(call(net, "GET", "/v1/acl/replication")[1])
    assert status["Enabled"] is False and status["SourceDatacenter"] == "dc1"


def test_default_token_applies_when_none_is_sent() -> None:
    net = started(initial_management=MASTER)
    assert call(net, "PUT", "/v1/kv/k", body=b"v")[0] == 403
    assert call(net, "PUT", "/v1/kv/k", body=b"v", default_token=MASTER)[0] == 200
    assert call(net, "GET", "/v1/acl/token/self", default_token=MASTER)[0] == 200
