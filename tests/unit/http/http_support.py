"""Test support for the HTTP API in memory: the state-backed /v1 routes and the agent's service
routes in one Klein app, on an in-memory FSM, local consensus and a fake clock (no sockets)."""

from __future__ import annotations

import random
from typing import Any

from klein import Klein
from twisted.internet import task
from twisted.internet.defer import Deferred, maybeDeferred

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.http import agent_services
from wanfedtx.http.common import KV_MAX_VALUE_SIZE, APIContext
from wanfedtx.http.routes import mount_state_routes
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.state import LocalState


class StateApp:
    """``app`` serves the state routes of datacenter dc1 and node n1's agent service routes;
    subclasses add routes and the error handlers."""

    def __init__(self, kv_limit: int = KV_MAX_VALUE_SIZE) -> None:
        self.clock = task.Clock()
        self.fsm = FSM()
        consensus = LocalConsensus(self.fsm, "127.0.0.1:8300")
        handlers = Endpoints(
            "dc1", self.fsm.state, consensus, self.clock, random.Random(1)
        ).handlers()

        def rpc(method: str, args: dict[str, Any]) -> Deferred[Any]:
            return maybeDeferred(handlers[method], args)

        self.app = Klein()
        mount_state_routes(self.app, APIContext("dc1", rpc, kv_limit))
        self.local = LocalState("n1")
        agent_services.mount(
            self.app,
            agent_services.AgentServicesContext(
                self.local, CheckRunners(self.local, self.clock), "dc1"
            ),
        )
