"""Anti-entropy under interleavings: local changes land while sync RPCs are in flight.

A model test: hypothesis draws a sequence of local operations (register a service with a TTL
check, pass/fail the check, deregister, re-register with another port) and of server steps
(apply and answer the oldest held RPC). RPCs are applied by the real catalog endpoints only when
released, as a slow server would. Whatever the interleaving, once every RPC is answered the
catalog must equal the agent's latest local state.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.defer import Deferred

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.catalog.errors import NotFoundError
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.local.ae import AntiEntropy
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.definitions import decode_service
from wanfedtx.local.state import LocalState

SERVICES = ("web1", "web2")


class SlowServer:
    """Holds every RPC; ``answer_one`` applies and answers the oldest."""

    def __init__(self, handlers: dict[str, Any]) -> None:
        self.handlers = handlers
        self.held: list[tuple[str, dict[str, Any], Deferred[Any]]] = []

    def __call__(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.held.append((method, args, d))
        return d

    def answer_one(self) -> bool:
        if not self.held:
            return False
        method, args, d = self.held.pop(0)
        self.handlers[method](args).chainDeferred(d)
        return True


class Model:
    def __init__(self) -> None:
        self.clock = task.Clock()
        self.fsm = FSM()
        consensus = LocalConsensus(self.fsm, "127.0.0.1:8300")
        handlers = Endpoints("dc1", self.fsm.state, consensus, self.clock,
                             random.Random(1)).handlers()
        self.server = SlowServer(handlers)
        self.local = LocalState("n1")
        self.runners = CheckRunners(self.local, self.clock)
        self.ae = AntiEntropy(self.local, self.server, {"Datacenter": "dc1", "Address": "10.0.0.1"},
                              self.clock, random.Random(2), full_interval=60)
        self.runners.startService()
        self.ae.startService()
        self.clock.advance(0)

    def do(self, op: tuple[str, int, int]) -> None:
        kind, which, port = op
        sid = SERVICES[which]
        if kind == "answer":
            self.server.answer_one()
        elif kind == "register":
            body = {"Name": "web", "ID": sid, "Port": port, "Check": {"TTL": "600s"}}
            self.local.add_service(decode_service(body))
        elif kind == "deregister":
            try:
                self.local.remove_service(sid)
            except NotFoundError:
                pass
        else:  # pass / fail the service's TTL check
            try:
                self.runners.ttl_update(f"service:{sid}", kind, f"{kind} {port}")
            except NotFoundError:
                pass
        self.clock.advance(0)

    def settle(self) -> None:
        for _ in range(1000):
            if not self.server.answer_one():
                break
            self.clock.advance(0)
        assert self.server.held == []

    def catalog(self) -> tuple[dict[str, int], dict[str, tuple[str, str]]]:
        _, found = self.fsm.state.node_services(None, "n1")
        services = {} if found is None else {s["ID"]: s["Port"] for s in found[1]}
        checks = {c["CheckID"]: (c["Status"], c["Output"])
                  for c in self.fsm.state.node_checks(None, "n1")[1]}
        return services, checks

    def local_view(self) -> tuple[dict[str, int], dict[str, tuple[str, str]]]:
        services = {sid: s["Port"] for sid, s in self.local.live_services().items()}
        checks = {cid: (c["Status"], c["Output"]) for cid, c in self.local.live_checks().items()}
        return services, checks


OPS = st.lists(
    st.tuples(st.sampled_from(["answer", "answer", "register", "deregister", "passing",
                               "critical"]),
              st.integers(0, len(SERVICES) - 1), st.integers(1, 3)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_catalog_converges_to_the_latest_local_state(ops: list[tuple[str, int, int]]) -> None:
    m = Model()
    for op in ops:
        m.do(op)
    m.settle()
    assert m.catalog() == m.local_view()
