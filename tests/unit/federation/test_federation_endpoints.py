"""FederationState.Apply/Get/List/ListMeshGateways over in-process datacenters."""

from __future__ import annotations

import os
from typing import Any

import pytest
from federation_support import Net, gateway, result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task

from wanfedtx.catalog.errors import BadRequestError

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "200"))


def two_dcs(net: Net) -> None:
    net.add("dc1", "dc1")
    net.add("dc2", "dc1")
    for cat in net.servers.values():
        cat.startService()


def rpc(net: Net, dc: str, method: str, args: dict[str, Any]) -> Any:
    return result(net.servers[dc].rpc(method, args))


def upsert(dc: str, *gws: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"Op": "upsert", "State": {"Datacenter": dc, "MeshGateways": list(gws), **extra}}


def test_apply_from_secondary_lands_in_primary(net: Net) -> None:
    two_dcs(net)
    net.clock.advance(1_700_000_000.5)
    ok = rpc(net, "dc2", "FederationState.Apply", upsert("dc2", gateway("gw2", "10.0.0.2", 443)))
    assert ok is True
    assert ("dc1", "FederationState.Apply") in net.calls
    _, row = net.servers["dc1"].fsm.state.federation_state_get(None, "dc2")
    assert row is not None and row.updated_at == "2023-11-14T22:13:20.5Z"
    assert row.primary_modify_index == row.modify_index
    # Not in the secondary (until replication copies it).
    assert net.servers["dc2"].fsm.state.federation_state_get(None, "dc2")[1] is None
    # An explicit UpdatedAt is kept.
    rpc(net, "dc1", "FederationState.Apply", upsert("dc3", UpdatedAt="2020-01-02T03:04:05Z"))
    _, row = net.servers["dc1"].fsm.state.federation_state_get(None, "dc3")
    assert row is not None and row.updated_at == "2020-01-02T03:04:05Z"
    # Delete, forwarded too; the reply is false as the reference's.
    deleted = rpc(
        net, "dc2", "FederationState.Apply", {"Op": "delete", "State": {"Datacenter": "DC2"}}
    )
    assert deleted is False
    assert net.servers["dc1"].fsm.state.federation_state_get(None, "dc2")[1] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"Op": "upsert"}, "invalid request: missing federation state datacenter"),
        ({"Op": "upsert", "State": {}}, "invalid request: missing federation state datacenter"),
        ({"Op": "delete", "State": {"Datacenter": ""}}, "missing federation state datacenter"),
        (
            {"Op": "frob", "State": {"Datacenter": "dc2"}},
            "Invalid federation state operation: frob",
        ),
        ({"Op": "upsert", "State": {"Datacenter": "x", "UpdatedAt": "soon"}}, "RFC 3339"),
        ({"Op": "upsert", "State": {"Datacenter": "x", "MeshGateways": [{}]}}, "missing Node"),
    ],
)
def test_apply_refuses_bad_requests(net: Net, args: dict[str, Any], message: str) -> None:
    two_dcs(net)
    before = net.servers["dc1"].fsm.state.federation_state_list(None)
    with pytest.raises(BadRequestError, match=message):
        rpc(net, "dc2", "FederationState.Apply", args)
    assert net.servers["dc1"].fsm.state.federation_state_list(None) == before


def test_get_is_routed_by_target_datacenter(net: Net) -> None:
    two_dcs(net)
    rpc(net, "dc1", "FederationState.Apply", upsert("dc2", gateway("gw2", "10.0.0.2", 443)))
    reply = rpc(net, "dc2", "FederationState.Get", {"Datacenter": "dc2", "TargetDatacenter": "dc1"})
    assert reply["State"]["Datacenter"] == "dc2"
    assert reply["State"]["MeshGateways"][0]["Service"]["Port"] == 443
    assert reply["Index"] == reply["State"]["ModifyIndex"]
    local = rpc(net, "dc2", "FederationState.Get", {"Datacenter": "dc2"})
    assert local["State"] is None and local["Index"] == 1  # coerced from 0


def test_list_and_list_mesh_gateways(net: Net) -> None:
    two_dcs(net)
    rpc(net, "dc1", "FederationState.Apply", upsert("dc1"))
    rpc(net, "dc1", "FederationState.Apply", upsert("dc2", gateway("gw2", "10.0.0.2", 443)))
    states = rpc(net, "dc2", "FederationState.List", {"Datacenter": "dc1"})["States"]
    assert [s["Datacenter"] for s in states] == ["dc1", "dc2"]
    assert "MeshGateways" not in states[0]
    gws = rpc(net, "dc1", "FederationState.ListMeshGateways", {})["DatacenterNodes"]
    assert list(gws) == ["dc2"] and gws["dc2"][0]["Node"]["Node"] == "gw2"
    assert rpc(net, "dc2", "FederationState.List", {})["States"] == []


def test_list_and_get_block_until_a_change(net: Net) -> None:
    two_dcs(net)
    rpc(net, "dc1", "FederationState.Apply", upsert("dc1"))
    idx = rpc(net, "dc1", "FederationState.List", {})["Index"]
    cat = net.servers["dc1"]
    listing = cat.rpc("FederationState.List", {"MinQueryIndex": idx, "MaxQueryTime": 10**10})
    getting = cat.rpc(
        "FederationState.Get", {"Datacenter": "dc1", "MinQueryIndex": idx, "MaxQueryTime": 10**10}
    )
    remote = net.servers["dc2"].rpc(
        "FederationState.List", {"Datacenter": "dc1", "MinQueryIndex": idx}
    )
    net.clock.advance(5)
    assert not listing.called and not getting.called and not remote.called
    rpc(net, "dc1", "FederationState.Apply", upsert("dc2"))
    assert result(listing)["Index"] > idx and len(result(listing)["States"]) == 2
    assert result(remote)["Index"] > idx
    assert not getting.called  # another datacenter's row changed
    rpc(net, "dc1", "FederationState.Apply", upsert("dc1", gateway("g", "1.1.1.1", 1)))
    assert result(getting)["State"]["MeshGateways"][0]["Node"]["Node"] == "g"


def test_blocking_get_times_out_with_the_same_index(net: Net) -> None:
    two_dcs(net)
    rpc(net, "dc1", "FederationState.Apply", upsert("dc1"))
    idx = rpc(net, "dc1", "FederationState.List", {})["Index"]
    d = net.servers["dc1"].rpc(
        "FederationState.Get", {"Datacenter": "dc1", "MinQueryIndex": idx, "MaxQueryTime": 10**9}
    )
    net.clock.advance(0.9)
    assert not d.called
    net.clock.advance(0.2)  # 1 s plus at most 1/16 jitter
    assert result(d)["Index"] == idx


# -- fuzz: bad input -> BadRequestError and nothing stored -------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_node = st.fixed_dictionaries(
    {"Node": st.text(max_size=4) | _json},
    optional={"Address": _json, "TaggedAddresses": _json, "Meta": _json, "ModifyIndex": _json},
)
_service = st.fixed_dictionaries(
    {"Service": st.text(max_size=4) | _json},
    optional={
        "Kind": st.sampled_from(["", "mesh-gateway", "x"]) | _json,
        "Port": _json,
        "Tags": _json,
        "Weights": _json,
        "Proxy": _json,
    },
)
_csn = st.fixed_dictionaries(
    {}, optional={"Node": _node | _json, "Service": _service | _json, "Checks": _json}
)
_state = st.fixed_dictionaries(
    {},
    optional={
        "Datacenter": st.sampled_from(["dc9", ""]) | _json,
        "MeshGateways": st.lists(_csn, max_size=2) | _json,
        "UpdatedAt": st.sampled_from(["2020-01-02T03:04:05Z", "0001-01-01T00:00:00Z"]) | _json,
        "PrimaryModifyIndex": _json,
    },
)
_name = st.text(min_size=1, max_size=6)
_valid_csn = st.builds(
    lambda node, svc, port, checks: {
        "Node": {"Node": node, "Address": "10.0.0.1"},
        "Service": {"Kind": "mesh-gateway", "Service": svc, "Port": port},
        "Checks": [{"CheckID": c, "Status": status} for c, status in checks],
    },
    _name,
    _name,
    st.integers(0, 65535),
    st.lists(st.tuples(_name, st.sampled_from(["passing", "warning", "critical"])), max_size=2),
)
_valid = st.fixed_dictionaries(
    {
        "Op": st.sampled_from(["upsert", "delete"]),
        "State": st.fixed_dictionaries(
            {"Datacenter": _name, "MeshGateways": st.lists(_valid_csn, max_size=2)}
        ),
    }
)
_request = _valid | (
    st.fixed_dictionaries(
        {},
        optional={
            "Op": st.sampled_from(["upsert", "delete", "x"]) | _json,
            "State": _state | _json,
            "Datacenter": _json,
        },
    )
    | _json
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(args=_request)
def test_fuzz_apply_decoder(args: Any) -> None:
    net = Net(task.Clock())
    net.add("dc1", "dc1")
    state = net.servers["dc1"].fsm.state
    handler = net.servers["dc1"].handlers["FederationState.Apply"]
    outcome: list[Any] = []
    handler(args).addBoth(outcome.append)
    assert outcome
    if isinstance(outcome[0], bool):
        _, rows = state.federation_state_list(None)
        if args["Op"] == "upsert":
            assert outcome[0] is True
            assert [r.datacenter for r in rows] == [args["State"]["Datacenter"]]
        else:
            assert outcome[0] is False and rows == []
        return
    failure = outcome[0]
    assert failure.check(BadRequestError), failure.getTraceback()
    assert state.federation_state_list(None) == (0, [])
