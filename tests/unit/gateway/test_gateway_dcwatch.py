"""Other datacenters' gateways: service dumps (GatewayGroups), federation states, the merge."""

from __future__ import annotations

from typing import Any

import pytest

from wanfedtx.gateway.agentwatch import Registration, snapshot_inputs
from wanfedtx.gateway.dcwatch import (
    GatewayGroup,
    GatewayWatchError,
    datacenters_from,
    group_of,
    groups_from_federation_states,
    merge_gateways,
    service_dump_path,
)
from wanfedtx.gateway.snapshot import HEALTHY, UNHEALTHY, BindInput, EndpointInput, build_snapshot


def csn(addr: str, port: int, dc: str, index: int, status: str = "passing",
        wan: str = "") -> dict[str, Any]:
    svc: dict[str, Any] = {"Kind": "mesh-gateway", "Service": "mesh-gateway", "Port": port,
                           "Address": addr, "ModifyIndex": index}
    if wan:
        svc["TaggedAddresses"] = {"wan": {"Address": wan, "Port": 443}}
    return {"Node": {"Node": f"n-{addr}", "Address": addr, "Datacenter": dc},
            "Service": svc, "Checks": [{"Status": status}]}


def test_group_uses_wan_addresses_of_other_datacenters_and_the_newest_index() -> None:
    g = group_of([csn("10.0.0.1", 4431, "dc2", 7, wan="198.18.0.1"),
                  csn("10.0.0.2", 4431, "dc2", 12, status="critical")], "dc1")
    assert g == GatewayGroup((EndpointInput("198.18.0.1", 443, HEALTHY, 1),
                              EndpointInput("10.0.0.2", 4431, UNHEALTHY, 1)), 12)
    # the local datacenter's gateways by LAN address
    assert group_of([csn("10.0.0.1", 4431, "dc1", 1, wan="198.18.0.1")], "dc1").endpoints == (
        EndpointInput("10.0.0.1", 4431),)


@pytest.mark.parametrize(
    "bad",
    [{"not": "a list"}, ["x"], [{"Node": "n", "Service": {}}], [{"Service": {"Port": "x"}}]],
)
def test_bad_service_dumps_are_clear_errors(bad: Any) -> None:
    with pytest.raises(GatewayWatchError, match="mesh gateway list"):
        group_of(bad, "dc1")


def test_bad_federation_states_and_datacenters_are_clear_errors() -> None:
    with pytest.raises(GatewayWatchError, match="expected a JSON object"):
        groups_from_federation_states(["dc2"], "dc1")
    with pytest.raises(GatewayWatchError, match="array of names"):
        datacenters_from({"dc": 1})
    with pytest.raises(GatewayWatchError, match="array of names"):
        datacenters_from(["dc1", ""])
    assert datacenters_from(["dc1", "dc2"]) == ["dc1", "dc2"]


def test_merge_takes_the_union_and_the_newer_set_where_both_exist() -> None:
    old = GatewayGroup((EndpointInput("198.18.0.1", 443),), 10)
    new = GatewayGroup((EndpointInput("198.18.9.9", 443),), 11)
    same = GatewayGroup((EndpointInput("198.18.5.5", 443, UNHEALTHY),), 10)
    dc3 = GatewayGroup((EndpointInput("198.18.3.3", 443),), 1)
    dc4 = GatewayGroup((EndpointInput("198.18.4.4", 443),), 1)
    # federation states newer: they win (the gateway came back at a new address)
    assert merge_gateways({"dc2": old}, {"dc2": new})["dc2"] == new.endpoints
    # the service dump newer: it wins
    assert merge_gateways({"dc2": new}, {"dc2": old})["dc2"] == new.endpoints
    # same registration: the service dump, with its live health
    assert merge_gateways({"dc2": same}, {"dc2": old})["dc2"] == same.endpoints
    merged = merge_gateways({"dc3": dc3}, {"dc4": dc4})
    assert merged == {"dc3": dc3.endpoints, "dc4": dc4.endpoints}


def test_a_gateway_without_the_meta_builds_remote_clusters_from_service_dumps() -> None:
    reg = Registration("dc1", "mesh-gateway", 8443, (BindInput("default", "0.0.0.0", 8443),),
                       wan_federation=False)
    groups = {"dc2": group_of([csn("10.0.2.1", 8443, "dc2", 5, wan="198.18.2.1")], "dc1")}
    inputs = snapshot_inputs(reg, (), merge_gateways(groups, {}), "1111.consul")
    assert inputs is not None
    snap = build_snapshot(inputs)
    assert snap.cluster_names() == ["dc2.internal.1111.consul"]
    (ep,) = snap.endpoints_of("dc2.internal.1111.consul") or ()
    assert (ep.address, ep.port, ep.health) == ("198.18.2.1", 443, HEALTHY)


def test_service_dump_path_names_the_kind_and_datacenter() -> None:
    assert service_dump_path("dc2") == (
        "/v1/internal/service-dump?kind=mesh-gateway&dc=dc2&stale")
