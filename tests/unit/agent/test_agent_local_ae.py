"""Agent-local services/checks, TTL checks and anti-entropy, driven by task.Clock.

Anti-entropy talks to real RPC endpoints over a real FSM (``LocalConsensus``), so the catalog it
produces is what the HTTP API would show.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred, fail

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.catalog.errors import BadRequestError, NotFoundError
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.local.ae import AntiEntropy
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.definitions import check_kind, decode_check, decode_service
from wanfedtx.local.state import LocalState


class World:
    def __init__(self) -> None:
        self.clock = task.Clock()
        self.fsm = FSM()
        self.consensus = LocalConsensus(self.fsm, "127.0.0.1:8300")
        self.handlers = Endpoints(
            "dc1", self.fsm.state, self.consensus, self.clock, random.Random(1)
        ).handlers()
        self.calls: list[str] = []
        self.broken = False
        self.local = LocalState("n1")
        self.runners = CheckRunners(self.local, self.clock)
        self.ae = AntiEntropy(
            self.local,
            self.rpc,
            {"Datacenter": "dc1", "Address": "10.0.0.1"},
            self.clock,
            random.Random(2),
            full_interval=60,
        )

    def rpc(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        self.calls.append(method)
        if self.broken:
            return fail(ConnectionError("servers unreachable"))
        return self.handlers[method](args)

    def start(self) -> None:
        self.runners.startService()
        self.ae.startService()
        self.clock.advance(0)

    def catalog_services(self) -> dict[str, Any]:
        _, found = self.fsm.state.node_services(None, "n1")
        return {} if found is None else {s["ID"]: s for s in found[1]}

    def catalog_checks(self) -> dict[str, Any]:
        return {c["CheckID"]: c for c in self.fsm.state.node_checks(None, "n1")[1]}


GATEWAY = {
    "name": "mesh-gateway",
    "kind": "mesh-gateway",
    "port": 4431,
    "meta": {"consul-wan-federation": "1"},
}


def test_config_service_and_ttl_check_reach_catalog_and_expire() -> None:
    w = World()
    w.local.add_service(decode_service(GATEWAY))
    w.local.add_service(decode_service({"Name": "api", "Port": 80, "Check": {"TTL": "10s"}}))
    w.start()
    svcs = w.catalog_services()
    assert svcs["mesh-gateway"]["Meta"] == {"consul-wan-federation": "1"}
    assert svcs["mesh-gateway"]["Kind"] == "mesh-gateway"
    assert w.catalog_checks()["service:api"]["Status"] == "critical"
    w.runners.ttl_update("service:api", "passing", "ok")
    w.clock.advance(0)
    assert w.catalog_checks()["service:api"]["Status"] == "passing"
    w.clock.advance(10)
    check = w.catalog_checks()["service:api"]
    assert (check["Status"], check["Output"]) == ("critical", "TTL expired")


def test_full_sync_removes_catalog_entries_the_agent_does_not_have() -> None:
    w = World()
    w.start()
    reg = {
        "Node": "n1",
        "Address": "10.0.0.1",
        "Service": {"Service": "stray"},
        "Checks": [{"CheckID": "serfHealth", "Status": "passing"}, {"CheckID": "stray-check"}],
    }
    w.handlers["Catalog.Register"](reg)
    w.handlers["Catalog.Register"](
        {"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "consul", "Port": 8300}}
    )
    assert set(w.catalog_services()) == {"stray", "consul"}
    w.clock.advance(60 + 60 / 16)
    assert set(w.catalog_services()) == {"consul"}
    assert set(w.catalog_checks()) == {"serfHealth"}


def test_failed_sync_retries_after_15s() -> None:
    w = World()
    w.broken = True
    w.local.add_service(decode_service({"Name": "web"}))
    w.start()
    assert w.catalog_services() == {}
    w.broken = False
    w.clock.advance(14.9)
    assert w.catalog_services() == {}
    w.clock.advance(0.2)
    assert set(w.catalog_services()) == {"web"}


def test_deregister_through_local_state() -> None:
    w = World()
    w.local.add_service(decode_service({"Name": "web", "Check": {"TTL": "5s"}}))
    w.start()
    w.local.remove_service("web")
    w.clock.advance(0)
    assert w.catalog_services() == {} and w.catalog_checks() == {}
    assert w.local.services == {} and w.local.checks == {}
    with pytest.raises(NotFoundError):
        w.local.remove_service("web")
    assert not w.clock.getDelayedCalls() or all(
        c.getTime() >= w.clock.seconds() + 60 for c in w.clock.getDelayedCalls()
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Missing service name"),
        ({"Name": "x", "Meta": {"consul-x": "1"}}, "Invalid Service Meta"),
        ({"Name": "x", "Meta": {"consul-wan-federation": "1"}}, "reserved for internal use"),
        ({"Name": "gw", "Kind": "mesh-gateway"}, "Port must be non-zero for a Mesh Gateway"),
        ({"Name": "x", "Check": {"HTTP": "http://a"}}, "Interval must be > 0"),
        ({"Name": "x", "Check": {"TTL": "1s", "Interval": "1s"}}, "cannot both be specified"),
        ({"Name": "x", "Check": {"Args": ["/bin/true"], "Interval": "1s"}}, "not supported"),
        ({"Name": "x", "Port": "80"}, "must be an integer"),
    ],
)
def test_service_definition_errors(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        decode_service(body)


def test_check_definition_snake_case_and_defaults() -> None:
    d = decode_check({"name": "db", "tcp": "127.0.0.1:5432", "interval": "10s"})
    assert (d.id, check_kind(d), d.interval, d.timeout, d.status) == (
        "db",
        "tcp",
        10.0,
        10.0,
        "critical",
    )
    svc = decode_service({"name": "w", "checks": [{"ttl": "1s"}, {"ttl": "2s"}]})
    assert [c.id for c in svc.checks] == ["service:w:1", "service:w:2"]


class HeldRPC:
    """Holds ``Catalog.Register``/``Catalog.Deregister`` replies until released, as a slow server
    would, so a local change can arrive while the RPC is in flight."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.held: list[tuple[Deferred[Any], Deferred[Any]]] = []
        self.hold = True

    def __call__(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        w = self.w
        w.calls.append(method)
        if not self.hold or method not in ("Catalog.Register", "Catalog.Deregister"):
            return w.handlers[method](args)
        outer: Deferred[Any] = Deferred()
        self.held.append((w.handlers[method](args), outer))
        return outer

    def release(self) -> None:
        held, self.held = self.held, []
        for inner, outer in held:
            inner.chainDeferred(outer)


def test_check_update_during_register_rpc_is_not_lost() -> None:
    w = World()
    held = HeldRPC(w)
    w.ae.rpc = held
    w.local.add_service(decode_service({"Name": "web", "ID": "web1", "Check": {"TTL": "30s"}}))
    w.start()
    assert held.held, "the register RPC is in flight"
    # the TTL pass arrives while the service (with its critical check) is being registered
    w.runners.ttl_update("service:web1", "passing", "ok")
    held.hold = False
    held.release()
    w.clock.advance(0)
    assert w.catalog_checks()["service:web1"]["Status"] == "passing"
    assert w.local.checks["service:web1"].in_sync


def test_service_reregistered_during_deregister_rpc_is_kept() -> None:
    w = World()
    w.local.add_service(decode_service({"Name": "web", "ID": "web1"}))
    w.start()
    held = HeldRPC(w)
    w.ae.rpc = held
    w.local.remove_service("web1")
    w.clock.advance(0)
    assert held.held, "the deregister RPC is in flight"
    w.local.add_service(decode_service({"Name": "web", "ID": "web1", "Port": 81}))
    held.hold = False
    held.release()
    w.clock.advance(0)
    assert "web1" in w.local.services and not w.local.services["web1"].deleted
    assert w.catalog_services()["web1"]["Port"] == 81
