"""10,000 random tokens against every HTTP endpoint family of a server with ACLs on
(``default_policy = "deny"``): each answer is a 403 or a 400 (or, for the reads that an
anonymous request may make, their answer filtered to nothing), with a one-line body, never a
500; nothing is written. The token arrives by header, ``?token=`` or ``Authorization: Bearer``."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

import pytest
from acl_support import MASTER, Net
from treq.testing import StubTreq
from twisted.internet import task

from wanfedtx.http.app import API
from wanfedtx.http.routes import server_families

REQUESTS = [
    ("PUT", "/v1/kv/app/x", b"v"),
    ("GET", "/v1/kv/app/x", None),
    ("GET", "/v1/kv/?recurse", None),
    ("DELETE", "/v1/kv/app?recurse", None),
    ("PUT", "/v1/catalog/register", b'{"Node": "n", "Address": "1.2.3.4"}'),
    ("PUT", "/v1/catalog/deregister", b'{"Node": "n"}'),
    ("GET", "/v1/catalog/nodes", None),
    ("GET", "/v1/health/service/consul", None),
    ("GET", "/v1/internal/federation-states", None),
    ("GET", "/v1/internal/federation-states/mesh-gateways", None),
    ("PUT", "/v1/acl/policy", b'{"Name": "p", "Rules": ""}'),
    ("PUT", "/v1/acl/token", b"{}"),
    ("GET", "/v1/acl/tokens", None),
    ("GET", "/v1/acl/token/self", None),
    ("PUT", "/v1/acl/bootstrap", None),
]
ANONYMOUS_READS = {
    "/v1/kv/?recurse",
    "/v1/catalog/nodes",
    "/v1/health/service/consul",
    "/v1/internal/federation-states/mesh-gateways",
    "/v1/acl/token/self",  # the secret "anonymous" is the anonymous token: it reads itself
}


def random_token(rng: random.Random, i: int) -> str:
    shape = i % 4
    if shape == 0:
        alphabet = "0123456789abcdef-xyz é%+&=/"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 50)))
    if shape == 1:
        return "-".join(
            "".join(rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)
        )
    if shape == 2:
        return rng.choice(["allow", "deny", "manage", "anonymous", "root", "x" * 300])
    return rng.randbytes(rng.randrange(1, 20)).decode("latin-1")


@pytest.mark.slow  # 10,000 requests through the whole HTTP stack: about 10 s of CPU
def test_ten_thousand_random_tokens_over_http() -> None:
    net = Net(task.Clock())
    net.add("dc1", "dc1", initial_management=MASTER)
    server = net.servers["dc1"]
    server.startService()
    stub = StubTreq(API(server_families(server)).resource())
    state = server.fsm.state

    def written() -> Any:
        return (
            state.kvs_list(None, "")[1],
            state.acl_policy_list(None)[1],
            state.acl_token_list(None)[1],
            state.federation_state_list(None)[1],
            state.list_nodes(None)[1],
        )

    before = written()
    rng = random.Random(1515)
    codes: dict[int, int] = {}
    for i in range(10_000):
        method, path, body = REQUESTS[i % len(REQUESTS)]
        token = random_token(rng, i)
        headers: dict[str, str] = {}
        url = "http://127.0.0.1" + path
        way = (i // len(REQUESTS)) % 3
        # a header value cannot carry control characters (HTTP refuses those lines itself)
        in_header = "".join(c for c in token.encode().decode("latin-1") if " " <= c != "\x7f")
        if way == 0:
            headers["X-Consul-Token"] = in_header or "x"
        elif way == 1:
            url += ("&" if "?" in url else "?") + "token=" + quote(token, safe="")
        else:
            headers["Authorization"] = "Bearer " + (in_header.strip() or "x")
        got: list[Any] = []
        stub.request(method, url, data=body, headers=headers).addBoth(got.append)
        stub.flush()
        response = got[0]
        assert not isinstance(response, Exception), response
        content: list[bytes] = []
        stub.content(response).addCallback(content.append)
        stub.flush()
        code, text = response.code, content[0]
        codes[code] = codes.get(code, 0) + 1
        if code in (200, 404) and path in ANONYMOUS_READS:
            continue  # an anonymous read, filtered to nothing (an empty KV tree is a 404)
        assert code in (400, 403), (code, method, path, token, text)
        assert text and b"\n" not in text.rstrip(b"\n"), (code, method, path, token, text)
    assert written() == before
    assert codes.get(403, 0) > 5000, codes
