"""FederationState struct: wire round trips (the stored, RPC and raft shapes do not change)."""

from __future__ import annotations

import os
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from wanfedtx.federation.structs import FederationState, decode_request, state_out
from wanfedtx.fsm.commands import MessageType, encode

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "200"))

_text = st.text(max_size=12)
_index = st.integers(0, 2**64 - 1)
_scalar = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | _text
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_csn = st.fixed_dictionaries(
    {
        "Node": st.dictionaries(_text, _json, max_size=4),
        "Service": st.dictionaries(_text, _json, max_size=4),
        "Checks": st.lists(st.dictionaries(_text, _json, max_size=3), max_size=2),
    }
)
# The wire shape every stored row, RPC reply (before MeshGateways is dropped when empty) and
# raft body has: all six fields, in this order.
_wire = st.builds(
    lambda dc, gws, t, p, c, m: {
        "Datacenter": dc,
        "MeshGateways": gws,
        "UpdatedAt": t,
        "PrimaryModifyIndex": p,
        "CreateIndex": c,
        "ModifyIndex": m,
    },
    st.text(min_size=1, max_size=12),
    st.lists(_csn, max_size=3),
    st.text(min_size=1, max_size=30),
    _index,
    _index,
    _index,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(_wire)
def test_to_wire_of_from_wire_is_the_identity(wire: dict[str, Any]) -> None:
    assert FederationState.from_wire(wire).to_wire() == wire
    # Same bytes too: the key order is kept, so msgpack (raft log, RPC) does not change.
    again = msgpack.packb(FederationState.from_wire(wire).to_wire(), use_bin_type=True)
    assert again == msgpack.packb(wire, use_bin_type=True)


@settings(max_examples=EXAMPLES, deadline=None)
@given(_wire)
def test_from_wire_of_to_wire_is_the_identity(wire: dict[str, Any]) -> None:
    state = FederationState.from_wire(wire)
    assert FederationState.from_wire(state.to_wire()) == state


@settings(max_examples=EXAMPLES, deadline=None)
@given(_wire)
def test_api_shape_drops_only_empty_mesh_gateways(wire: dict[str, Any]) -> None:
    out = state_out(FederationState.from_wire(wire))
    expected = dict(wire)
    if not expected["MeshGateways"]:
        del expected["MeshGateways"]
    assert out == expected and list(out) == list(expected)


def test_missing_fields_take_their_zero_values() -> None:
    assert FederationState.from_wire({"Datacenter": "dc1"}) == FederationState("dc1")
    assert FederationState("dc1").to_wire() == {
        "Datacenter": "dc1",
        "MeshGateways": [],
        "UpdatedAt": "0001-01-01T00:00:00Z",
        "PrimaryModifyIndex": 0,
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


def test_the_raft_body_of_an_upsert_keeps_its_bytes() -> None:
    gateway = {
        "Node": {"Node": "gw1", "Address": "10.0.0.1", "Datacenter": "dc2"},
        "Service": {"Kind": "mesh-gateway", "Service": "mesh-gateway", "Port": 443},
        "Checks": [],
    }
    body = decode_request(
        {
            "Op": "upsert",
            "Datacenter": "dc1",
            "State": {"Datacenter": "dc2", "MeshGateways": [gateway]},
        },
        1_700_000_000.5,
    )
    state = body["State"]
    # The body as it was built before the struct existed: a dict literal in this order.
    before = {
        "Datacenter": "dc1",
        "Op": "upsert",
        "State": {
            "Datacenter": "dc2",
            "MeshGateways": state["MeshGateways"],
            "UpdatedAt": "2023-11-14T22:13:20.5Z",
            "PrimaryModifyIndex": 0,
            "CreateIndex": 0,
            "ModifyIndex": 0,
        },
    }
    assert encode(MessageType.FEDERATION_STATE, body) == encode(
        MessageType.FEDERATION_STATE, before
    )
