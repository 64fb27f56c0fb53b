"""ACLs through a real client agent (``server = false``) beside a real server on 127.0.0.1: the
client forwards the token with every RPC (the server enforces), and its own ``/v1/agent/*``
endpoints resolve the token by asking its server (cached), refusing with 403."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import start_dev_agent
from twisted.internet import task

from wanfedtx.agent.agent import Agent

pytestmark = pytest.mark.integration

MASTER = "6a1253d2-1785-24fd-91c2-f8e78c745511"
ACL = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": MASTER}}


def make_agent(reactor: Any, node: str, *, server: bool, **extra: Any) -> Agent:
    return start_dev_agent(reactor, node, server=server, acl=ACL, **extra)


async def call(method: str, url: str, token: str = "", body: Any = None) -> tuple[int, Any]:
    headers = {"X-Consul-Token": token} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    resp = await treq.request(method, url, data=data, headers=headers)
    raw = await resp.content()
    try:
        return resp.code, json.loads(raw)
    except ValueError:
        return resp.code, raw.decode()


@pytest_twisted.ensureDeferred
async def test_client_agent_with_acls(reactor: Any) -> None:
    s1 = make_agent(reactor, "s1", server=True)
    c1 = make_agent(
        reactor,
        "c1",
        server=False,
        retry_join=[f"127.0.0.1:{s1.config.serf_port_lan}"],
        retry_interval="200ms",
    )
    c = c1.http_urls()[0]
    try:
        for _ in range(400):
            code, _ = await call("GET", f"{c}/v1/acl/token/self", MASTER)
            if code == 200:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert code == 200
        # through the client: the server enforces with the forwarded token
        assert (await call("PUT", f"{c}/v1/kv/k", body="v"))[0] == 403
        assert await call("PUT", f"{c}/v1/kv/k", MASTER, "v") == (200, True)
        code, _pol = await call(
            "PUT",
            f"{c}/v1/acl/policy",
            MASTER,
            {"Name": "c1-agent", "Rules": 'agent "c1" { policy = "read" }'},
        )
        assert code == 200
        code, tok = await call(
            "PUT", f"{c}/v1/acl/token", MASTER, {"Policies": [{"Name": "c1-agent"}]}
        )
        assert code == 200
        # the client's own endpoints: resolved by asking the server
        assert (await call("GET", f"{c}/v1/agent/self"))[0] == 403
        assert (await call("GET", f"{c}/v1/agent/self", tok["SecretID"]))[0] == 200
        assert (await call("PUT", f"{c}/v1/agent/leave", tok["SecretID"]))[0] == 403
        code, text = await call("GET", f"{c}/v1/agent/self", "11111111-2222-4333-8444-555555555555")
        assert (code, text) == (403, "ACL not found")
        assert (
            await call(
                "PUT",
                f"{c}/v1/agent/service/register",
                tok["SecretID"],
                {"Name": "web", "Port": 80},
            )
        )[0] == 403
    finally:
        await c1.stop()
        await s1.stop()
