"""Golden tests of the routing snapshot, plus what the model must reject."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wanfedtx.gateway.errors import SnapshotInputError
from wanfedtx.gateway.snapshot import (
    BindInput,
    EndpointInput,
    ServerInput,
    SnapshotInputs,
    build_snapshot,
    inputs_from_json,
    snapshot_from_json,
)

GOLDEN = Path(__file__).parents[2] / "data" / "gateway"
TRUST = "11111111-2222-3333-4444-555555555555.consul"
UPDATE = os.environ.get("WANFED_UPDATE_GOLDEN") == "1"


def federation_states_inputs() -> SnapshotInputs:
    """The reference's TestConfigSnapshotMeshGatewayUsingFederationStates, as our inputs."""
    return SnapshotInputs(
        datacenter="dc1",
        trust_domain=TRUST,
        binds=(BindInput("default", "1.2.3.4", 8443),),
        gateways={
            "dc2": (EndpointInput("198.18.1.1", 443), EndpointInput("198.18.1.2", 443)),
        },
        services={
            "foo": tuple(EndpointInput(f"172.16.1.{i}", 2222) for i in (3, 4, 5, 9)),
            "bar": tuple(EndpointInput(f"172.16.1.{i}", 2222) for i in (6, 7, 8)),
        },
    )


def wanfed_inputs(wan_federation: bool) -> SnapshotInputs:
    """primary DC gateway with two servers; secondary and third DCs known via federation states."""
    return SnapshotInputs(
        datacenter="primary",
        trust_domain=TRUST,
        binds=(BindInput("default", "10.0.0.10", 4431), BindInput("wan", "192.0.2.10", 4431)),
        wan_federation=wan_federation,
        servers=(ServerInput("pri", "10.0.0.1"), ServerInput("pri2", "10.0.0.2", 8300)),
        gateways={
            "primary": (EndpointInput("192.0.2.10", 4431),),
            "secondary": (
                EndpointInput("198.51.100.1", 4432),
                EndpointInput("198.51.100.2", 4432, "UNHEALTHY", 1),
            ),
            "third": (EndpointInput("203.0.113.7", 4433, "HEALTHY", 3),),
        },
    )


def secondary_inputs() -> SnapshotInputs:
    """secondary DC gateway, wanfed on, before the local DC's own fed state exists."""
    return SnapshotInputs(
        datacenter="secondary",
        trust_domain=TRUST,
        binds=(BindInput("default", "10.1.0.10", 4432),),
        wan_federation=True,
        servers=(ServerInput("sec", "10.1.0.1"),),
        gateways={"primary": (EndpointInput("192.0.2.10", 4431),)},
    )


CASES = {
    "mesh-gateway-using-federation-states": federation_states_inputs,
    "mesh-gateway-wanfed-primary": lambda: wanfed_inputs(True),
    "mesh-gateway-wanfed-off-primary": lambda: wanfed_inputs(False),
    "mesh-gateway-wanfed-secondary-no-local-fedstate": secondary_inputs,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    got = build_snapshot(CASES[name]()).to_json()
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(path.read_text())
    # the JSON form is the explicit routes-file form: it round-trips
    assert snapshot_from_json(got).to_json() == got


def test_federation_states_golden_facts() -> None:
    """The reference golden's facts, checked one by one."""
    snap = build_snapshot(federation_states_inputs())
    assert sorted(snap.cluster_names()) == [
        f"bar.default.dc1.internal.{TRUST}",
        f"dc2.internal.{TRUST}",
        f"foo.default.dc1.internal.{TRUST}",
    ]
    assert all(c.connect_timeout_ms == 5000 for c in snap.clusters)
    eps = {la.cluster_name: la.endpoints for la in snap.load_assignments}
    assert [(e.address, e.port, e.health, e.weight) for e in eps[f"dc2.internal.{TRUST}"]] == [
        ("198.18.1.1", 443, "HEALTHY", 1),
        ("198.18.1.2", 443, "HEALTHY", 1),
    ]
    assert [e.address for e in eps[f"bar.default.dc1.internal.{TRUST}"]] == [
        "172.16.1.6",
        "172.16.1.7",
        "172.16.1.8",
    ]
    assert [e.address for e in eps[f"foo.default.dc1.internal.{TRUST}"]] == [
        "172.16.1.3",
        "172.16.1.4",
        "172.16.1.5",
        "172.16.1.9",
    ]
    (listener,) = snap.listeners
    assert listener.name == "default:1.2.3.4:8443"
    first, last = listener.filter_chains
    assert first.server_names == (f"*.dc2.internal.{TRUST}",)
    assert first.cluster == f"dc2.internal.{TRUST}"
    assert first.stat_prefix == "mesh_gateway_remote_default_dc2_tcp"
    assert last.server_names == () and last.sni_cluster and last.cluster == ""
    assert last.stat_prefix == "mesh_gateway_local_default_tcp"
    # no server-exposure output without the wanfed meta
    assert not any(".server." in n or n.startswith("server.") for n in snap.cluster_names())


def test_wanfed_chain_order_and_names() -> None:
    snap = build_snapshot(wanfed_inputs(True))
    chains = snap.listeners[1].filter_chains
    assert [(c.server_names, c.cluster, c.stat_prefix) for c in chains] == [
        (
            (f"*.secondary.internal.{TRUST}",),
            f"secondary.internal.{TRUST}",
            "mesh_gateway_remote_wan_secondary_tcp",
        ),
        (
            (f"*.third.internal.{TRUST}",),
            f"third.internal.{TRUST}",
            "mesh_gateway_remote_wan_third_tcp",
        ),
        (
            ("*.server.secondary.consul",),
            "server.secondary.consul",
            "mesh_gateway_remote_wan_secondary_tcp",
        ),
        (("*.server.third.consul",), "server.third.consul", "mesh_gateway_remote_wan_third_tcp"),
        (
            ("pri.server.primary.consul",),
            "pri.server.primary.consul",
            "mesh_gateway_local_server_wan_primary_tcp",
        ),
        (
            ("pri2.server.primary.consul",),
            "pri2.server.primary.consul",
            "mesh_gateway_local_server_wan_primary_tcp",
        ),
        ((), "", "mesh_gateway_local_wan_tcp"),
    ]
    assert snap.listeners[1].name == "wan:192.0.2.10:4431"
    eps = {la.cluster_name: la.endpoints for la in snap.load_assignments}
    # the local catch-all cluster holds every server, UNKNOWN health and no weight
    assert [(e.address, e.port, e.health, e.weight) for e in eps["server.primary.consul"]] == [
        ("10.0.0.1", 8300, "UNKNOWN", None),
        ("10.0.0.2", 8300, "UNKNOWN", None),
    ]
    # remote server.<dc> CLAs are identical to the <dc>.internal ones
    assert eps["server.secondary.consul"] == eps[f"secondary.internal.{TRUST}"]


def test_local_server_cluster_needs_the_local_dc_among_datacenters() -> None:
    """As in the reference: the CLA exists, but without a cluster it routes nowhere."""
    snap = build_snapshot(secondary_inputs())
    assert "server.secondary.consul" not in snap.cluster_names()
    assert snap.endpoints_of("server.secondary.consul") is None
    assert "server.primary.consul" in snap.cluster_names()


def test_inputs_from_json_matches_python_inputs() -> None:
    data = {
        "datacenter": "dc1",
        "trust_domain": TRUST,
        "binds": [{"name": "default", "address": "1.2.3.4", "port": 8443}],
        "gateways": {
            "dc2": [{"address": "198.18.1.1", "port": 443}, {"address": "198.18.1.2", "port": 443}]
        },
        "services": {
            "foo": [{"address": f"172.16.1.{i}", "port": 2222} for i in (3, 4, 5, 9)],
            "bar": [{"address": f"172.16.1.{i}", "port": 2222} for i in (6, 7, 8)],
        },
    }
    assert build_snapshot(inputs_from_json(data)) == build_snapshot(federation_states_inputs())


@pytest.mark.parametrize(
    "data, message",
    [
        ({"clusters": [{"name": "a"}, {"name": "a"}]}, "duplicate cluster"),
        (
            {
                "listeners": [
                    {
                        "name": "l",
                        "address": "127.0.0.1",
                        "port": 1,
                        "filter_chains": [
                            {"server_names": ["a.b"], "stat_prefix": "x", "cluster": "c"},
                            {"server_names": ["a.b"], "stat_prefix": "y", "cluster": "c"},
                        ],
                    }
                ]
            },
            "two filter",
        ),
        (
            {
                "listeners": [
                    {
                        "name": "l",
                        "address": "127.0.0.1",
                        "port": 1,
                        "filter_chains": [
                            {"server_names": ["w*.b"], "stat_prefix": "x", "cluster": "c"}
                        ],
                    }
                ]
            },
            "wildcard",
        ),
        (
            {
                "clusters": [{"name": "c"}],
                "endpoints": [
                    {
                        "cluster_name": "c",
                        "endpoints": [{"address": "127.0.0.1", "port": 1, "health": "GREAT"}],
                    }
                ],
            },
            "health",
        ),
        ({"clusters": [{"nam": "c"}]}, "invalid snapshot data"),
    ],
)
def test_invalid_snapshots_are_rejected(data: dict[str, object], message: str) -> None:
    with pytest.raises(SnapshotInputError, match=message):
        snapshot_from_json(data)


def test_missing_inputs_are_reported() -> None:
    with pytest.raises(SnapshotInputError, match="datacenter"):
        inputs_from_json({"trust_domain": "x"})
