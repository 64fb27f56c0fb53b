"""Test support for the ``wanfed`` HTTP verbs: an in-memory agent API (the real route families
over a real FSM, local consensus and the ``Operator.Raft*`` endpoints on a fake raft) and a CLI
transport that serves each request through ``treq.testing.StubTreq`` (no sockets)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from treq.testing import StubTreq
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.cli import httpapi
from wanfedtx.config import LoadOptions, load
from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.http.agent import AgentRoutes
from wanfedtx.http.agent_ops import AgentOpsRoutes
from wanfedtx.http.app import API
from wanfedtx.http.common import APIContext
from wanfedtx.http.gossip import GossipOpsRoutes
from wanfedtx.http.operator import OperatorRoutes
from wanfedtx.http.routes import state_families
from wanfedtx.raft.errors import ConfigChangeError
from wanfedtx.raft.operator import OperatorEndpoints, ServerIdentity

LEADER = "10.0.0.10:8300"
FOLLOWER = "10.0.0.11:8300"
STRANGER = "10.0.0.12:8300"


@attrs.define
class FakeRaft:
    """Three voters; the third is not a LAN member. ``remove_server`` records the removal."""

    voters: list[str] = attrs.field(factory=lambda: [LEADER, FOLLOWER, STRANGER])
    removed: list[str] = attrs.field(factory=list)
    refuse: str = ""

    def configuration(self) -> tuple[int, list[str]]:
        return 5, list(self.voters)

    def leader_address(self) -> str:
        return LEADER

    def remove_server(self, addr: str) -> Deferred[tuple[int, Any]]:
        if self.refuse:
            return fail(ConfigChangeError(self.refuse))
        self.removed.append(addr)
        self.voters.remove(addr)
        return succeed((6, None))


@attrs.define
class FakeAgent:
    """The agent side of the agent routes: self, stats, join/leave/force-leave, reload."""

    config: RuntimeConfig = attrs.field(
        factory=lambda: load(LoadOptions(dev=True, flags={"node_name": "n1"})).runtime
    )
    joined: list[tuple[str, bool]] = attrs.field(factory=list)
    left: int = 0
    forced: list[tuple[str, bool]] = attrs.field(factory=list)
    reload_error: str = ""
    reloads: int = 0

    def member(self) -> dict[str, Any]:
        return {"Name": "n1"}

    def stats(self) -> dict[str, dict[str, str]]:
        return {"consul": {"server": "true", "acl": "disabled", "known_servers": "1"},
                "agent": {"checks": "0", "services": "2"}}

    async def join(self, addrs: Any, wan: bool = False) -> int:
        for a in addrs:
            if a.startswith("bad"):
                raise RuntimeError(f"Failed to join {a}: dial failed")
            self.joined.append((a, wan))
        return len(addrs)

    async def leave_and_shutdown(self) -> None:
        self.left += 1

    def force_leave(self, node: str, prune: bool = False) -> None:
        if node != "n2":
            raise RuntimeError(f"agent: No node found with name '{node}'")
        self.forced.append((node, prune))

    def reload(self) -> Deferred[None]:
        self.reloads += 1
        if self.reload_error:
            return fail(RuntimeError(self.reload_error))
        return succeed(None)


class AgentAPI:
    """The agent's HTTP API in memory: catalog, health, KV, status, operator, agent routes."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.fsm = FSM()
        consensus = LocalConsensus(self.fsm, LEADER)
        endpoints = Endpoints("dc1", self.fsm.state, consensus, self.clock, random.Random(1))
        self.raft = FakeRaft()
        lan = {
            LEADER: ServerIdentity("s1", "0f3c5a1e-8d2b-4c7a-9e61-2b7d4c9a1f00", "3"),
            FOLLOWER: ServerIdentity("s2", "7a41d2c3-55e0-4b8e-a1f2-93c04d6e7b11", "3"),
        }
        operator = OperatorEndpoints(self.raft, lambda: lan, endpoints._forward, LEADER)
        self.handlers = {**endpoints.handlers(), **operator.handlers()}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        ctx = APIContext("dc1", self.rpc)
        self.agent = FakeAgent()
        self.api = API([*state_families(ctx), OperatorRoutes(ctx), AgentRoutes(self.agent),
                        AgentOpsRoutes(self.agent), GossipOpsRoutes(self.agent)])
        self.requests: list[httpapi.Request] = []

    def rpc(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        self.calls.append((method, args))
        return maybeDeferred(self.handlers[method], args)

    def resource(self) -> IResource:
        return self.api.resource()

    def transport(self, req: httpapi.Request, stream: bool) -> httpapi.Response:
        self.requests.append(req)
        return serve(self.resource(), req, stream)


def serve(resource: IResource, req: httpapi.Request, stream: bool) -> httpapi.Response:
    """One CLI request answered by ``resource`` through StubTreq."""
    stub = StubTreq(resource)
    d = stub.request(req.method, req.url, data=req.body, headers=req.headers)
    stub.flush()
    got: list[Any] = []
    d.addBoth(got.append)
    if not got or isinstance(got[0], Failure):
        raise httpapi.APIError(f"no answer to {req.method} {req.url}: {got}")
    response = got[0]
    content: list[bytes] = []
    stub.content(response).addCallback(content.append)
    stub.flush()
    headers = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
    body = content[0] if content else b""
    lines: Iterator[bytes] | None = iter(body.splitlines(keepends=True)) if stream else None
    return httpapi.Response(response.code, body, headers, lines)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> AgentAPI:
    """An in-memory agent API that every ``wanfed`` HTTP verb in the test talks to."""
    for name in ("HTTP_ADDR", "HTTP_TOKEN", "HTTP_TOKEN_FILE", "HTTP_SSL"):
        monkeypatch.delenv(f"CONSUL_{name}", raising=False)
        monkeypatch.delenv(f"WANFED_{name}", raising=False)
    agent_api = AgentAPI()
    monkeypatch.setattr(httpapi, "TRANSPORT", [agent_api.transport])
    return agent_api
