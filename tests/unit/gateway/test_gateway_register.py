"""``wanfed gateway -register``: flag checks with Consul's texts, the registration body, the
agent client against a fake agent (``StubTreq``), register-run-deregister, endpoint health."""

from __future__ import annotations

import json
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.application.service import Service
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Request

from wanfedtx.cli.main import main
from wanfedtx.gateway.agentwatch import agent_domain, endpoint_of
from wanfedtx.gateway.register import (
    AgentClient,
    AgentRequestError,
    GatewayFlagError,
    GatewayFlags,
    RegisteredGateway,
    agent_info,
    check_gateway_flags,
    registration_payload,
)
from wanfedtx.gateway.snapshot import EndpointInput

EXPOSE_MESH = "'-expose-servers' can only be used for mesh gateways"
EXPOSE_REGISTER = "'-expose-servers' requires '-register'"


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (GatewayFlags(expose_servers=True), EXPOSE_MESH),
        (GatewayFlags(gateway="ingress", register=True, expose_servers=True), EXPOSE_MESH),
        (GatewayFlags(gateway="mesh", expose_servers=True), EXPOSE_REGISTER),
        (GatewayFlags(mesh_gateway=True, expose_servers=True), EXPOSE_REGISTER),
        (GatewayFlags(register=True), "Auto-Registration can only be used for gateways"),
        (GatewayFlags(gateway="egress"), "Gateway must be one of: terminating, mesh, or ingress"),
        (
            GatewayFlags(gateway="mesh", mesh_gateway=True),
            "The mesh-gateway flag is deprecated and cannot be used alongside the gateway flag",
        ),
    ],
)
def test_flag_errors_verbatim(flags: GatewayFlags, error: str) -> None:
    with pytest.raises(GatewayFlagError) as e:
        check_gateway_flags(flags)
    assert str(e.value) == error


def test_flag_kinds() -> None:
    assert check_gateway_flags(GatewayFlags()) == ""
    assert check_gateway_flags(GatewayFlags(gateway="mesh", register=True)) == "mesh-gateway"
    assert check_gateway_flags(GatewayFlags(mesh_gateway=True)) == "mesh-gateway"
    flags = GatewayFlags(gateway="mesh", register=True, expose_servers=True)
    assert check_gateway_flags(flags) == "mesh-gateway"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["-expose-servers"], EXPOSE_MESH),
        (["-gateway=mesh", "-expose-servers"], EXPOSE_REGISTER),
        (["-gateway", "terminating", "-register", "-expose-servers"], EXPOSE_MESH),
    ],
)
def test_cli_prints_the_error_alone_and_exits_1(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gateway", *argv]) == 1
    err = capsys.readouterr().err
    assert err == error + "\n"


def _bindable(ip: str) -> bool:
    return ip in ("10.0.0.5",)


def test_payload_expose_servers_lan_and_wan() -> None:
    flags = GatewayFlags(
        gateway="mesh",
        register=True,
        expose_servers=True,
        address="10.0.0.5:4431",
        wan_address="203.0.113.9",
    )
    body = registration_payload(flags, check_gateway_flags(flags), _bindable)
    assert body == {
        "Kind": "mesh-gateway",
        "ID": "mesh-gateway",
        "Name": "mesh-gateway",
        "Address": "10.0.0.5",
        "Port": 4431,
        "Meta": {"consul-wan-federation": "1"},
        "TaggedAddresses": {
            "lan": {"Address": "10.0.0.5", "Port": 4431},
            "wan": {"Address": "203.0.113.9", "Port": 4431},  # the LAN port by default
        },
        "Check": {
            "Name": "mesh-gateway listening",
            "TCP": "10.0.0.5:4431",
            "Interval": "10s",
            "DeregisterCriticalServiceAfter": "6h",
        },
    }


def test_payload_defaults_and_bind_tagged_addresses() -> None:
    flags = GatewayFlags(gateway="mesh", register=True, service="gw-a")
    body = registration_payload(flags, "mesh-gateway", _bindable)
    assert (body["Name"], body["ID"], body["Address"], body["Port"]) == ("gw-a", "gw-a", "", 443)
    assert body["Meta"] is None  # no -expose-servers: no meta
    assert body["TaggedAddresses"] == {}
    assert body["Check"]["TCP"] == "127.0.0.1:443"
    assert "Proxy" not in body
    both = GatewayFlags(
        gateway="mesh", register=True, address="10.0.0.5:8443", wan_address="10.0.0.5:9443",
        deregister_after_critical="1m",
    )
    body = registration_payload(both, "mesh-gateway", _bindable)
    assert body["Proxy"] == {
        "Config": {
            "envoy_gateway_no_default_bind": True,
            "envoy_gateway_bind_tagged_addresses": True,
        }
    }
    assert body["TaggedAddresses"]["wan"] == {"Address": "10.0.0.5", "Port": 9443}
    assert body["Check"]["DeregisterCriticalServiceAfter"] == "1m"


def test_payload_refuses_a_lan_address_it_cannot_bind() -> None:
    flags = GatewayFlags(gateway="mesh", register=True, address="192.0.2.1:443")
    with pytest.raises(GatewayFlagError) as e:
        registration_payload(flags, "mesh-gateway", _bindable)
    assert str(e.value) == (
        'The LAN address "192.0.2.1" will not be bindable. Either set a bindable address or'
        " override the bind addresses with -bind-address"
    )


def test_payload_bad_address() -> None:
    flags = GatewayFlags(gateway="mesh", register=True, address="gw.example:443")
    with pytest.raises(GatewayFlagError, match="-address"):
        registration_payload(flags, "mesh-gateway", _bindable)


def test_domain_from_the_agent() -> None:
    agent_self = {"Config": {"Datacenter": "dc2"}, "DebugConfig": {"DNSDomain": "example."}}
    assert agent_domain(agent_self) == "example"
    assert agent_info(agent_self).datacenter == "dc2"
    assert agent_domain({"Config": {}}) == "consul"


def _csn(dc: str, checks: tuple[str, ...] = (), **svc: Any) -> dict[str, Any]:
    return {
        "Node": {
            "Datacenter": dc,
            "Address": "10.0.0.1",
            "TaggedAddresses": {"wan": "198.51.100.1"},
        },
        "Service": {"Port": 443, **svc},
        "Checks": [{"Status": s} for s in checks],
    }


def test_endpoint_weight_zero_is_unhealthy_and_weights_capped() -> None:
    warn0 = _csn("dc1", ("warning",), Weights={"Passing": 1, "Warning": 0})
    assert endpoint_of(warn0, "dc1") == EndpointInput("10.0.0.1", 443, "UNHEALTHY", 1)
    pass0 = _csn("dc1", (), Weights={"Passing": 0, "Warning": 1})
    assert endpoint_of(pass0, "dc1").health == "UNHEALTHY"
    big = _csn("dc1", ("passing",), Weights={"Passing": 1000, "Warning": 1})
    assert endpoint_of(big, "dc1") == EndpointInput("10.0.0.1", 443, "HEALTHY", 128)


def test_endpoint_address_order_as_the_locator() -> None:
    # another DC: service address before the node's wan tagged address
    assert endpoint_of(_csn("dc2", Address="10.9.9.9"), "dc1").address == "10.9.9.9"
    assert endpoint_of(_csn("dc2"), "dc1").address == "198.51.100.1"
    tagged = _csn("dc2", Address="10.9.9.9",
                  TaggedAddresses={"wan": {"Address": "203.0.113.7", "Port": 8443}})
    ep = endpoint_of(tagged, "dc1")
    assert (ep.address, ep.port) == ("203.0.113.7", 8443)
    # our DC: service address, else the node's
    assert endpoint_of(_csn("dc1", Address="10.9.9.9"), "dc1").address == "10.9.9.9"
    assert endpoint_of(_csn("dc1"), "dc1").address == "10.0.0.1"


class FakeAgent(Resource):
    """The agent endpoints the registration uses; records every call."""

    isLeaf = True

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, Any]] = []
        self.refuse = refuse

    def render(self, request: Request) -> bytes:
        method = request.method.decode()
        path = request.path.decode()
        raw = request.content.read() if request.content is not None else b""
        self.calls.append((method, path, json.loads(raw) if raw else None))
        if path == "/v1/agent/self":
            return json.dumps(
                {"Config": {"Datacenter": "dc1"}, "DebugConfig": {"DNSDomain": "corp."}}
            ).encode()
        if self.refuse and path.startswith("/v1/agent/service/register"):
            request.setResponseCode(400)
            return b"Invalid Service Meta: Key prefix 'consul-' is reserved for internal use"
        return b""


class FakeGateway(Service):
    def __init__(self) -> None:
        self.reloads = 0

    def reload(self) -> bool:
        self.reloads += 1
        return True


def _payload() -> dict[str, Any]:
    flags = GatewayFlags(gateway="mesh", register=True, expose_servers=True)
    return registration_payload(flags, "mesh-gateway", _bindable)


def test_agent_client_info_and_refusal() -> None:
    agent = FakeAgent(refuse=True)
    client = AgentClient("http://127.0.0.1:8500", token="t", http=StubTreq(agent))
    got: list[Any] = []
    Deferred.fromCoroutine(client.info()).addCallback(got.append)
    assert got[0].domain == "corp"
    failed: list[Any] = []
    Deferred.fromCoroutine(client.register(_payload())).addErrback(failed.append)
    assert failed[0].check(AgentRequestError)
    assert "Unexpected response code: 400" in failed[0].getErrorMessage()


def test_registered_gateway_registers_runs_and_deregisters() -> None:
    agent = FakeAgent()
    clock = task.Clock()
    gateway = FakeGateway()
    fatal: list[str] = []
    svc = RegisteredGateway(
        AgentClient("http://agent", http=StubTreq(agent)), _payload(), gateway, fatal.append, clock
    )
    svc.startService()
    assert fatal == []
    assert svc.registered and gateway.running
    method, path, body = agent.calls[0]
    assert (method, path) == ("PUT", "/v1/agent/service/register")
    assert body["Meta"] == {"consul-wan-federation": "1"}
    assert body["Kind"] == "mesh-gateway"
    assert svc.reload() is True and gateway.reloads == 1
    assert agent.calls[-1][1] == "/v1/agent/service/register"  # registered again
    done: list[Any] = []
    svc.stopService().addCallback(done.append)
    assert done == [None]
    assert not gateway.running
    assert agent.calls[-1][:2] == ("PUT", "/v1/agent/service/deregister/mesh-gateway")


def test_registered_gateway_refused_is_fatal_one_line() -> None:
    gateway = FakeGateway()
    fatal: list[str] = []
    svc = RegisteredGateway(
        AgentClient("http://agent", http=StubTreq(FakeAgent(refuse=True))),
        _payload(),
        gateway,
        fatal.append,
        task.Clock(),
    )
    svc.startService()
    assert fatal == [
        'Error registering service "mesh-gateway": Unexpected response code: 400 (Invalid'
        " Service Meta: Key prefix 'consul-' is reserved for internal use)"
    ]
    assert not gateway.running and not svc.registered
