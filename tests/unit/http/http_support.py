"""Test support for the HTTP API in memory: the state-backed /v1 route families and the agent's
service routes composed into one API, on an in-memory FSM, local consensus and a fake clock (no
sockets)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, maybeDeferred

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.http.agent_services import AgentServicesRoutes
from wanfedtx.http.app import API
from wanfedtx.http.common import KV_MAX_VALUE_SIZE, APIContext
from wanfedtx.http.family import RouteFamily
from wanfedtx.http.routes import state_families
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.state import LocalState


class StateApp:
    """``api`` serves the state routes of datacenter dc1, node n1's agent service routes and the
    ``extra`` families."""

    def __init__(
        self, kv_limit: int = KV_MAX_VALUE_SIZE, extra: Sequence[RouteFamily] = ()
    ) -> None:
        self.clock = task.Clock()
        self.fsm = FSM()
        consensus = LocalConsensus(self.fsm, "127.0.0.1:8300")
        self.endpoints = Endpoints(
            "dc1", self.fsm.state, consensus, self.clock, random.Random(1)
        )
        handlers = self.endpoints.handlers()

        def rpc(method: str, args: dict[str, Any]) -> Deferred[Any]:
            return maybeDeferred(handlers[method], args)

        self.local = LocalState("n1")
        self.ctx = APIContext("dc1", rpc, kv_limit)
        self.families: list[RouteFamily] = [
            *state_families(self.ctx),
            AgentServicesRoutes(self.local, CheckRunners(self.local, self.clock), "dc1"),
            *extra,
        ]
        self.api = API(self.families)
