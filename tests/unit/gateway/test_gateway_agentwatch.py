"""Conversions of the gateway's agent watches into snapshot inputs."""

from __future__ import annotations

from typing import Any

import pytest

from wanfedtx.gateway.agentwatch import (
    AgentWatchError,
    endpoint_of,
    gateways_from_federation_states,
    registration_from_json,
    servers_from_health,
    snapshot_inputs,
)
from wanfedtx.gateway.snapshot import BindInput, EndpointInput, ServerInput, build_snapshot


def gw_service(**over: Any) -> dict[str, Any]:
    svc = {
        "Kind": "mesh-gateway",
        "ID": "mesh-gateway",
        "Service": "mesh-gateway",
        "Port": 4431,
        "Address": "",
        "Meta": {"consul-wan-federation": "1"},
        "TaggedAddresses": {},
    }
    svc.update(over)
    return svc


def csn(node: str, dc: str, addr: str, port: int, *checks: str, **svc: Any) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Datacenter": dc, "Address": addr, "TaggedAddresses": {}},
        "Service": {"Service": svc.pop("name", "mesh-gateway"), "Port": port, "Address": "", **svc},
        "Checks": [{"Status": s} for s in checks],
    }


def test_registration_binds_and_meta() -> None:
    reg = registration_from_json("primary", gw_service())
    assert reg.binds == (BindInput("default", "0.0.0.0", 4431),)
    assert reg.wan_federation and reg.datacenter == "primary"
    tagged = {"lan": {"Address": "10.0.0.1", "Port": 4431}, "wan": {"Address": "198.51.100.1"}}
    svc = gw_service(Address="10.0.0.1", TaggedAddresses=tagged, Meta={})
    reg = registration_from_json("p", svc)
    assert reg.binds == (
        BindInput("default", "10.0.0.1", 4431),
        BindInput("wan", "198.51.100.1", 4431),
    )
    assert not reg.wan_federation
    with pytest.raises(AgentWatchError, match="not a mesh-gateway"):
        registration_from_json("p", gw_service(Kind=""))
    with pytest.raises(AgentWatchError, match="has no port"):
        registration_from_json("p", gw_service(Port=0))


def test_servers_errors_are_the_reference_strings() -> None:
    ok = [csn("pri", "primary", "10.0.0.5", 8300, name="consul")]
    assert servers_from_health(ok, "primary") == (ServerInput("pri", "10.0.0.5", 8300),)
    with pytest.raises(AgentWatchError, match=r'^expected service name "consul" but got "web"$'):
        servers_from_health([csn("pri", "primary", "10.0.0.5", 8300, name="web")], "primary")
    with pytest.raises(AgentWatchError, match=r'^expected datacenter "primary" but got "other"$'):
        servers_from_health([csn("x", "other", "10.0.0.5", 8300, name="consul")], "primary")


def test_endpoints_use_wan_addresses_across_datacenters_and_check_health() -> None:
    local = csn("gw1", "primary", "10.0.0.1", 4431, "passing")
    assert endpoint_of(local, "primary") == EndpointInput("10.0.0.1", 4431, "HEALTHY", 1)
    remote = csn(
        "gw2",
        "secondary",
        "10.1.0.1",
        4432,
        "critical",
        TaggedAddresses={"wan": {"Address": "203.0.113.9", "Port": 443}},
    )
    assert endpoint_of(remote, "primary") == EndpointInput("203.0.113.9", 443, "UNHEALTHY", 1)
    node_wan = csn("gw3", "secondary", "10.1.0.2", 4432, "warning", Weights={"Warning": 3})
    node_wan["Node"]["TaggedAddresses"] = {"wan": "198.51.100.7"}
    assert endpoint_of(node_wan, "primary") == EndpointInput("198.51.100.7", 4432, "HEALTHY", 3)


def test_inputs_wait_for_servers_then_build_the_wanfed_snapshot() -> None:
    reg = registration_from_json("primary", gw_service())
    gateways = gateways_from_federation_states(
        {
            "primary": [csn("gw1", "primary", "10.0.0.1", 4431)],
            "secondary": [csn("gw2", "secondary", "10.1.0.1", 4432)],
        },
        "primary",
    )
    assert snapshot_inputs(reg, (), gateways, "t.consul") is None  # not valid without servers
    inputs = snapshot_inputs(reg, (ServerInput("pri", "10.0.0.5", 8300),), gateways, "t.consul")
    assert inputs is not None
    snap = build_snapshot(inputs)
    names = [c.name for c in snap.clusters]
    assert names == [
        "secondary.internal.t.consul",
        "server.primary.consul",
        "server.secondary.consul",
        "pri.server.primary.consul",
    ]
    assert snap.endpoints_of("server.secondary.consul")[0].address == "10.1.0.1"
