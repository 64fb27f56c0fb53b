"""federation-states table, raft type 30 and snapshot/restore."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from wanfedtx.federation import fsm as fed_fsm
from wanfedtx.federation.structs import FederationState, decode_request, is_same, state_out
from wanfedtx.fsm.commands import MessageType, encode
from wanfedtx.fsm.errors import FSMError
from wanfedtx.fsm.machine import FSM
from wanfedtx.state import StateStore, WatchSet
from wanfedtx.state.errors import MissingDatacenterError


def gateway(node: str, addr: str, port: int, status: str = "passing") -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": addr, "Datacenter": "dc1"},
        "Service": {
            "Kind": "mesh-gateway",
            "ID": "mesh-gateway",
            "Service": "mesh-gateway",
            "Port": port,
            "Meta": {"consul-wan-federation": "1"},
        },
        "Checks": [{"Node": node, "CheckID": "gw", "Name": "gw", "Status": status}],
    }


def fed_state(dc: str, *gws: dict[str, Any]) -> FederationState:
    req = decode_request(
        {"Op": "upsert", "State": {"Datacenter": dc, "MeshGateways": list(gws)}}, 0.0
    )
    return FederationState.from_wire(req["State"])


def test_set_keeps_create_index_and_defaults_primary_modify_index() -> None:
    s = StateStore()
    s.federation_state_set(5, fed_state("dc1"))
    idx, row = s.federation_state_get(None, "DC1")  # case-insensitive
    assert idx == 5 and row is not None
    assert (row.create_index, row.modify_index, row.primary_modify_index) == (5, 5, 5)
    s.federation_state_set(9, fed_state("dc1", gateway("gw1", "1.2.3.4", 443)))
    idx, row = s.federation_state_get(None, "dc1")
    assert idx == 9 and row is not None
    assert (row.create_index, row.modify_index, row.primary_modify_index) == (5, 9, 9)
    replicated = attrs.evolve(fed_state("dc2"), primary_modify_index=3)
    s.federation_state_set(10, replicated)
    _, row = s.federation_state_get(None, "dc2")
    assert row is not None and row.primary_modify_index == 3
    assert [r.datacenter for r in s.federation_state_list(None)[1]] == ["dc1", "dc2"]


def test_missing_datacenter_is_refused() -> None:
    s = StateStore()
    with pytest.raises(MissingDatacenterError, match="missing datacenter on federation state"):
        s.federation_state_set(1, FederationState(""))
    assert s.federation_state_list(None) == (0, [])


def test_delete_of_missing_record_does_not_bump_index() -> None:
    s = StateStore()
    s.federation_state_set(3, fed_state("dc1"))
    s.federation_state_delete(4, "nope")
    assert s.federation_state_list(None)[0] == 3
    s.federation_state_delete(6, "DC1")
    assert s.federation_state_list(None) == (6, [])


def test_watches_fire_on_change() -> None:
    s = StateStore()
    s.federation_state_set(1, fed_state("dc1"))
    fired: list[str] = []
    ws_get, ws_list, ws_other = WatchSet(), WatchSet(), WatchSet()
    s.federation_state_get(ws_get, "dc1")
    s.federation_state_list(ws_list)
    s.federation_state_get(ws_other, "dc3")
    ws_get.subscribe(lambda: fired.append("get"))
    ws_list.subscribe(lambda: fired.append("list"))
    ws_other.subscribe(lambda: fired.append("other"))
    s.federation_state_set(2, fed_state("dc2"))
    assert fired == ["list"]
    s.federation_state_set(3, fed_state("dc1", gateway("g", "1.1.1.1", 1)))
    assert fired == ["list", "get"]


def _cmd(op: str, state: FederationState | dict[str, Any]) -> bytes:
    wire = state.to_wire() if isinstance(state, FederationState) else state
    return encode(MessageType.FEDERATION_STATE, {"Datacenter": "dc1", "Op": op, "State": wire})


def test_fsm_upsert_delete_and_unknown_op() -> None:
    fsm = FSM()
    fed_fsm.install(fsm)
    st = fed_state("dc2", gateway("gw1", "10.0.0.1", 8443))
    assert fsm.apply(7, _cmd("upsert", st)) is True
    _, row = fsm.state.federation_state_get(None, "dc2")
    assert row is not None and is_same(row, st) and row.modify_index == 7
    bad = fsm.apply(8, _cmd("frob", st))
    assert isinstance(bad, FSMError)
    assert str(bad) == "invalid federation state operation type: frob"
    assert fsm.apply(9, _cmd("delete", {"Datacenter": "dc2"})) is None
    assert fsm.state.federation_state_list(None) == (9, [])
    empty = fsm.apply(10, _cmd("upsert", {"Datacenter": "", "MeshGateways": []}))
    assert isinstance(empty, MissingDatacenterError)
    with pytest.raises(ValueError):
        fed_fsm.install(fsm)


def test_snapshot_restore_round_trips() -> None:
    fsm = FSM()
    fed_fsm.install(fsm)
    fsm.apply(21, _cmd("upsert", fed_state("dc1", gateway("a", "1.2.3.4", 5555))))
    fsm.apply(22, _cmd("upsert", fed_state("dc2", gateway("b", "5.6.7.8", 5555))))
    chunks = list(fsm.snapshot())
    other = FSM()
    fed_fsm.install(other)
    other.restore(chunks, 22)
    assert other.state.federation_state_list(None) == fsm.state.federation_state_list(None)
    idx, rows = other.state.federation_state_list(None)
    assert idx == 22 and [(r.datacenter, r.modify_index) for r in rows] == [
        ("dc1", 21),
        ("dc2", 22),
    ]
    assert "MeshGateways" in state_out(rows[0])
    assert "MeshGateways" not in state_out(attrs.evolve(rows[0], mesh_gateways=()))
