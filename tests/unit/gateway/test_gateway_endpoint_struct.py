"""EndpointInput.from_check_service_node: the one mesh-gateway address rule (agent watch and
the servers' gateway locator), checked against a transcription of the reference's
``CheckServiceNode.BestAddress``."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wanfedtx.federation.gateway_locator import best_address
from wanfedtx.gateway.agentwatch import endpoint_of
from wanfedtx.gateway.snapshot import HEALTHY, UNHEALTHY, EndpointInput, inputs_from_json
from wanfedtx.hostport import join_host_port

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "200"))

_addr = st.sampled_from(["", "10.0.0.1", "10.0.0.2", "203.0.113.9", "::1"])
_port = st.integers(0, 65535)


def _reference_best_address(csn: dict[str, Any], wan: bool) -> tuple[str, int]:
    """``NodeService.BestAddress`` then ``Node.BestAddress`` when the address is empty."""
    svc, node = csn["Service"], csn["Node"]
    addr, port = svc["Address"], svc["Port"]
    tagged = svc["TaggedAddresses"].get("wan")
    if wan and tagged is not None:
        addr = tagged["Address"]
        if tagged["Port"] != 0:
            port = tagged["Port"]
    if addr == "":
        addr = node["TaggedAddresses"].get("wan", node["Address"]) if wan else node["Address"]
    return addr, port


@st.composite
def _csn(draw: st.DrawFn) -> dict[str, Any]:
    svc_tagged = {}
    if draw(st.booleans()):
        # An empty wan Address falls back like a missing one (our rule; Go would dial "").
        svc_tagged["wan"] = {"Address": draw(_addr.filter(bool)), "Port": draw(_port)}
    node_tagged = {}
    if draw(st.booleans()):
        node_tagged["wan"] = draw(_addr.filter(bool))
    return {
        "Node": {
            "Node": "gw",
            "Address": draw(_addr),
            "TaggedAddresses": node_tagged,
            "Datacenter": draw(st.sampled_from(["dc1", "dc2"])),
        },
        "Service": {
            "Service": "mesh-gateway",
            "Address": draw(_addr),
            "Port": draw(_port),
            "TaggedAddresses": svc_tagged,
            "Weights": {"Passing": draw(st.integers(1, 9)), "Warning": draw(st.integers(1, 9))},
        },
        "Checks": [
            {"Status": s}
            for s in draw(st.lists(st.sampled_from(["passing", "warning", "critical"]), max_size=3))
        ],
    }


@settings(max_examples=EXAMPLES, deadline=None)
@given(_csn(), st.booleans())
def test_address_is_the_reference_best_address(csn: dict[str, Any], wan: bool) -> None:
    ep = EndpointInput.from_check_service_node(csn, wan)
    assert (ep.address, ep.port) == _reference_best_address(csn, wan)
    # The locator dials the same address the gateway's snapshot routes to.
    assert best_address(csn, wan) == join_host_port(ep.address, ep.port)
    assert endpoint_of(csn, "dc1") == EndpointInput.from_check_service_node(
        csn, csn["Node"]["Datacenter"] != "dc1"
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(_csn())
def test_health_and_weight_follow_the_checks(csn: dict[str, Any]) -> None:
    ep = EndpointInput.from_check_service_node(csn, wan=False)
    statuses = {c["Status"] for c in csn["Checks"]}
    weights = csn["Service"]["Weights"]
    if "critical" in statuses:
        assert (ep.health, ep.weight) == (UNHEALTHY, 1)
    elif "warning" in statuses:
        assert (ep.health, ep.weight) == (HEALTHY, weights["Warning"])
    else:
        assert (ep.health, ep.weight) == (HEALTHY, weights["Passing"])


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(
        st.builds(
            EndpointInput,
            st.sampled_from(["10.0.0.1", "::1", "gw.example"]),
            st.integers(1, 65535),
            st.sampled_from([HEALTHY, UNHEALTHY]),
            st.integers(1, 100),
        ),
        max_size=4,
    )
)
def test_routes_file_endpoints_round_trip(endpoints: list[EndpointInput]) -> None:
    """The routes file's ``inputs`` form of an endpoint reads back as the same struct."""
    wire = [
        {"address": e.address, "port": e.port, "health": e.health, "weight": e.weight}
        for e in endpoints
    ]
    data = {"datacenter": "dc1", "trust_domain": "t.consul", "gateways": {"dc2": wire}}
    assert inputs_from_json(data).gateways["dc2"] == tuple(endpoints)
