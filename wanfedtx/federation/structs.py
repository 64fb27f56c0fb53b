# -*- test-case-name: tests.unit.federation -*-
"""FederationState requests and states: decoding, output shape, ``IsSame``.

A federation state is ``{"Datacenter", "MeshGateways", "UpdatedAt", "PrimaryModifyIndex",
"CreateIndex", "ModifyIndex"}``. ``MeshGateways`` holds CheckServiceNodes in the wire shape
``{"Node": {...}, "Service": {...}, "Checks": [...]}`` that :func:`wanfedtx.catalog.structs.
check_service_node_out` produces, so what the catalog reads, what is stored and what the HTTP API
shows are one shape. ``UpdatedAt`` is an RFC 3339 UTC string as Go's ``time.Time`` marshals;
the zero time is ``0001-01-01T00:00:00Z``.

Incoming requests (``FederationStateRequest {Datacenter, Op, State, Token}``) are decoded field
by field; anything malformed raises :class:`~wanfedtx.catalog.errors.BadRequestError`. Decoded
states are :class:`~wanfedtx.state.federation.FederationState` structs (re-exported here); the
raft body of a request keeps the state's wire form (:meth:`FederationState.to_wire`).
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from wanfedtx.catalog import structs
from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.catalog.structs import Fields
from wanfedtx.state.federation import ZERO_TIME as ZERO_TIME
from wanfedtx.state.federation import FederationState as FederationState
from wanfedtx.state.table import Row

OP_UPSERT = "upsert"
OP_DELETE = "delete"
FEDERATION_STATE_OPS = (OP_UPSERT, OP_DELETE)

MESH_GATEWAY_KIND = "mesh-gateway"
META_WAN_FEDERATION_KEY = "consul-wan-federation"

MISSING_DATACENTER = "invalid request: missing federation state datacenter"


def format_time(seconds: float) -> str:
    """A POSIX time as Go's RFC 3339 (nanosecond precision, trailing zeros dropped, ``Z``)."""
    dt = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def is_zero_time(value: str) -> bool:
    return value in ("", ZERO_TIME)


def _decode_time(f: Fields, name: str) -> str:
    text = f.text(name)
    if is_zero_time(text):
        return ZERO_TIME
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestError(
            f"{f.where}: field {name!r} is not an RFC 3339 time: {text!r}"
        ) from None
    if parsed.tzinfo is None:
        raise BadRequestError(f"{f.where}: field {name!r} needs a time zone: {text!r}")
    return text


def _indexes(f: Fields) -> dict[str, int]:
    return {
        "CreateIndex": f.integer("CreateIndex", 0, 0, 2**64 - 1),
        "ModifyIndex": f.integer("ModifyIndex", 0, 0, 2**64 - 1),
    }


def decode_check_service_node(obj: Any, where: str) -> Row:
    """A ``CheckServiceNode`` (wire shape) as the normalised wire shape."""
    f = Fields(obj, where)
    node_obj = f.obj("Node")
    if node_obj is None:
        raise BadRequestError(f"{where}: missing Node")
    service_obj = f.obj("Service")
    if service_obj is None:
        raise BadRequestError(f"{where}: missing Service")
    nf = Fields(node_obj, f"{where}.Node")
    node: Row = {
        "ID": nf.text("ID"),
        "Node": nf.text("Node"),
        "Address": nf.text("Address"),
        "Datacenter": nf.text("Datacenter"),
        "TaggedAddresses": nf.str_map("TaggedAddresses"),
        "Meta": nf.str_map("Meta"),
        **_indexes(nf),
    }
    if not node["Node"]:
        raise BadRequestError(f"{where}.Node: missing node name")
    svc = structs.decode_node_service(service_obj, f"{where}.Service")
    svc.update(_indexes(Fields(service_obj, f"{where}.Service")))
    checks = []
    for i, raw in enumerate(f.obj_list("Checks")):
        check = structs.decode_health_check(raw, node["Node"], f"{where}.Checks[{i}]")
        check.update(_indexes(Fields(raw, f"{where}.Checks[{i}]")))
        checks.append(check)
    return structs.check_service_node_out(node, svc, checks)


def decode_federation_state(obj: Any, where: str = "State") -> FederationState:
    """A ``FederationState`` from untrusted input; a missing or empty Datacenter is the
    reference's error."""
    if obj is None:
        raise BadRequestError(MISSING_DATACENTER)
    f = Fields(obj, where)
    dc = f.text("Datacenter")
    if not dc:
        raise BadRequestError(MISSING_DATACENTER)
    gateways = [
        decode_check_service_node(g, f"{where}.MeshGateways[{i}]")
        for i, g in enumerate(f.obj_list("MeshGateways"))
    ]
    indexes = _indexes(f)
    return FederationState(
        datacenter=dc,
        mesh_gateways=tuple(gateways),
        updated_at=_decode_time(f, "UpdatedAt"),
        primary_modify_index=f.integer("PrimaryModifyIndex", 0, 0, 2**64 - 1),
        create_index=indexes["CreateIndex"],
        modify_index=indexes["ModifyIndex"],
    )


def decode_request(obj: Any, now: float) -> Row:
    """A ``FederationStateRequest`` checked as ``FederationState.Apply`` does.

    Upserts without ``UpdatedAt`` get ``now`` (POSIX seconds). Returns the FSM body
    ``{"Datacenter", "Op", "State"}``.
    """
    f = Fields(obj, "FederationStateRequest")
    datacenter = f.text("Datacenter")
    op = f.text("Op")
    state = decode_federation_state(f.raw("State"))
    if op == OP_UPSERT:
        if is_zero_time(state.updated_at):
            state = attrs.evolve(state, updated_at=format_time(now))
    elif op != OP_DELETE:
        raise BadRequestError(f"Invalid federation state operation: {op}")
    return {"Datacenter": datacenter, "Op": op, "State": state.to_wire()}


def state_out(state: FederationState) -> Row:
    """A stored federation state as the API shows it (``MeshGateways`` omitted when empty)."""
    out = state.to_wire()
    if not out["MeshGateways"]:
        del out["MeshGateways"]
    return out


_NODE_SAME = ("ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta")
_SERVICE_SAME = (
    "ID",
    "Service",
    "Tags",
    "Address",
    "Port",
    "TaggedAddresses",
    "Weights",
    "Meta",
    "EnableTagOverride",
    "Kind",
    "Proxy",
    "Connect",
)
_CHECK_SAME = (
    "Node",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Definition",
)


def _empty_as_none(value: Any) -> Any:
    return None if value in ({}, []) else value


def _fields_same(a: Row, b: Row, names: tuple[str, ...]) -> bool:
    return all(_empty_as_none(a.get(n)) == _empty_as_none(b.get(n)) for n in names)


def is_same(a: FederationState, b: FederationState) -> bool:
    """The reference's ``FederationState.IsSame``: datacenter and gateways, element by element
    in order; ``UpdatedAt`` and raft indexes are ignored."""
    if a.datacenter != b.datacenter:
        return False
    ga, gb = a.mesh_gateways, b.mesh_gateways
    if len(ga) != len(gb):
        return False
    for x, y in zip(ga, gb, strict=True):
        if not _fields_same(x["Node"], y["Node"], _NODE_SAME):
            return False
        if not _fields_same(x["Service"], y["Service"], _SERVICE_SAME):
            return False
        if len(x["Checks"]) != len(y["Checks"]):
            return False
        for cx, cy in zip(x["Checks"], y["Checks"], strict=True):
            if not _fields_same(cx, cy, _CHECK_SAME):
                return False
    return True
