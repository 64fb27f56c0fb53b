# -*- test-case-name: tests.unit.fsm.test_fsm_machine,tests.unit.state.test_state_store -*-
"""Decoding and shaping of the reference's request/response structs as plain dicts.

Incoming dicts (from JSON bodies or msgpack RPC) are checked field by field and turned into
normalised rows with every field present and of the right type; field names match
case-insensitively, as Go's JSON decoding does. Any problem raises
:class:`~wanfedtx.catalog.errors.BadRequestError` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.state.table import Row


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Fields:
    """Case-insensitive access to a request object, with type checks."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, Mapping):
            raise BadRequestError(f"{where}: expected an object, got {_type_name(obj)}")
        self.where = where
        self._by_lower: dict[str, Any] = {}
        for key, value in obj.items():
            if isinstance(key, str):
                self._by_lower.setdefault(key.lower(), value)

    def raw(self, name: str) -> Any:
        return self._by_lower.get(name.lower())

    def _bad(self, name: str, want: str, got: Any) -> BadRequestError:
        return BadRequestError(
            f"{self.where}: field {name!r} must be {want}, got {_type_name(got)}"
        )

    def text(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._bad(name, "a string", value)
        return value

    def integer(self, name: str, default: int = 0, lo: int = -(2**63), hi: int = 2**64 - 1) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(name, "an integer", value)
        if not lo <= value <= hi:
            raise BadRequestError(f"{self.where}: field {name!r} is out of range: {value}")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._bad(name, "a boolean", value)
        return value

    def str_list(self, name: str) -> list[str]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(name, "an array of strings", value)
        return list(value)

    def str_map(self, name: str) -> dict[str, str]:
        value = self.raw(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self._bad(name, "an object of strings", value)
        return dict(value)

    def obj(self, name: str) -> Mapping[str, Any] | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._bad(name, "an object", value)
        return value

    def opaque(self, name: str) -> Any:
        """A nested value kept as given (must be msgpack-able JSON data)."""
        return _plain(self.raw(name), f"{self.where}.{name}")

    def obj_list(self, name: str) -> list[Any]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._bad(name, "an array", value)
        return value


def _plain(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, where) for k, v in value.items()}
    raise BadRequestError(f"{where}: unsupported value of type {_type_name(value)}")


# -- services and checks ---------------------------------------------------------------------

SERVICE_KINDS = ("", "connect-proxy", "mesh-gateway")


def decode_weights(f: Fields) -> dict[str, int]:
    w = f.obj("Weights")
    if w is None:
        return {"Passing": 1, "Warning": 1}
    wf = Fields(w, f"{f.where}.Weights")
    return {
        "Passing": wf.integer("Passing", 1, 0, 2**31),
        "Warning": wf.integer("Warning", 1, 0, 2**31),
    }


def decode_node_service(obj: Any, where: str = "Service") -> Row:
    """A ``NodeService`` (catalog form: ``Service`` is the name)."""
    f = Fields(obj, where)
    kind = f.text("Kind")
    if kind not in SERVICE_KINDS:
        raise BadRequestError(f"{where}: invalid service kind {kind!r}")
    name = f.text("Service")
    sid = f.text("ID") or name
    if not name:
        raise BadRequestError("Must provide service name with ID")
    return node_service_row(f, kind, sid, name)


def node_service_row(
    f: Fields,
    kind: str,
    sid: str,
    name: str,
    meta: dict[str, str] | None = None,
    port: int | None = None,
) -> Row:
    """The ``NodeService`` row of ``f`` once kind, ID and name are settled; ``Meta`` and ``Port``
    are read here (in field order) unless the caller has already read and checked them."""
    return {
        "Kind": kind,
        "ID": sid,
        "Service": name,
        "Tags": f.str_list("Tags"),
        "Address": f.text("Address"),
        "TaggedAddresses": f.opaque("TaggedAddresses") or {},
        "Meta": f.str_map("Meta") if meta is None else meta,
        "Port": f.integer("Port", 0, 0, 65535) if port is None else port,
        "Weights": decode_weights(f),
        "EnableTagOverride": f.boolean("EnableTagOverride"),
        "Proxy": f.opaque("Proxy") or {},
        "Connect": f.opaque("Connect") or {},
    }


HEALTH_STATUSES = ("passing", "warning", "critical")


def decode_health_check(obj: Any, node: str, where: str = "Check") -> Row:
    f = Fields(obj, where)
    status = f.text("Status")
    if status and status not in HEALTH_STATUSES:
        raise BadRequestError(f"{where}: invalid check status {status!r}")
    name = f.text("Name")
    check_id = f.text("CheckID") or name
    if not check_id:
        raise BadRequestError(f"{where}: missing check ID (set CheckID or Name)")
    check_node = f.text("Node") or node
    if check_node.lower() != node.lower():
        raise BadRequestError(
            f"{where}: check node {check_node!r} does not match registration node {node!r}"
        )
    return {
        "Node": node,
        "CheckID": check_id,
        "Name": name,
        "Status": status or "critical",
        "Notes": f.text("Notes"),
        "Output": f.text("Output"),
        "ServiceID": f.text("ServiceID"),
        "ServiceName": f.text("ServiceName"),
        "ServiceTags": f.str_list("ServiceTags"),
        "Type": f.text("Type"),
        "Definition": f.opaque("Definition") or {},
    }


def decode_register_request(obj: Any) -> Row:
    """A ``RegisterRequest``; the checks of the reference's ``Catalog.Register`` applied."""
    f = Fields(obj, "RegisterRequest")
    node = f.text("Node")
    if not node:
        raise BadRequestError("Must provide node")
    skip = f.boolean("SkipNodeUpdate")
    address = f.text("Address")
    if not address and not skip:
        raise BadRequestError("Must provide address if SkipNodeUpdate is not set")
    service_obj = f.raw("Service")
    service = decode_node_service(service_obj) if service_obj is not None else None
    check_obj = f.raw("Check")
    check = decode_health_check(check_obj, node) if check_obj is not None else None
    checks = [
        decode_health_check(c, node, f"Checks[{i}]") for i, c in enumerate(f.obj_list("Checks"))
    ]
    return {
        "Datacenter": f.text("Datacenter"),
        "ID": f.text("ID"),
        "Node": node,
        "Address": address,
        "TaggedAddresses": f.str_map("TaggedAddresses"),
        "NodeMeta": f.str_map("NodeMeta"),
        "Service": service,
        "Check": check,
        "Checks": checks,
        "SkipNodeUpdate": skip,
    }


def decode_deregister_request(obj: Any) -> Row:
    f = Fields(obj, "DeregisterRequest")
    node = f.text("Node")
    if not node:
        raise BadRequestError("Must provide node")
    return {
        "Datacenter": f.text("Datacenter"),
        "Node": node,
        "ServiceID": f.text("ServiceID"),
        "CheckID": f.text("CheckID"),
    }


# -- response shapes -------------------------------------------------------------------------


def node_out(node: Row) -> Row:
    return {
        "ID": node["ID"],
        "Node": node["Node"],
        "Address": node["Address"],
        "Datacenter": node["Datacenter"],
        "TaggedAddresses": node["TaggedAddresses"] or None,
        "Meta": node["Meta"] or None,
        "CreateIndex": node["CreateIndex"],
        "ModifyIndex": node["ModifyIndex"],
    }


def node_service_out(svc: Row) -> Row:
    return {
        "Kind": svc["Kind"],
        "ID": svc["ID"],
        "Service": svc["Service"],
        "Tags": svc["Tags"] or None,
        "Address": svc["Address"],
        "TaggedAddresses": svc["TaggedAddresses"] or None,
        "Meta": svc["Meta"] or None,
        "Port": svc["Port"],
        "Weights": svc["Weights"],
        "EnableTagOverride": svc["EnableTagOverride"],
        "Proxy": svc["Proxy"],
        "Connect": svc["Connect"],
        "CreateIndex": svc["CreateIndex"],
        "ModifyIndex": svc["ModifyIndex"],
    }


def service_node_out(node: Row, svc: Row) -> Row:
    """A ``ServiceNode`` (what ``/v1/catalog/service/<s>`` lists)."""
    return {
        "ID": node["ID"],
        "Node": node["Node"],
        "Address": node["Address"],
        "Datacenter": node["Datacenter"],
        "TaggedAddresses": node["TaggedAddresses"] or None,
        "NodeMeta": node["Meta"] or None,
        "ServiceKind": svc["Kind"],
        "ServiceID": svc["ID"],
        "ServiceName": svc["Service"],
        "ServiceTags": svc["Tags"],
        "ServiceAddress": svc["Address"],
        "ServiceTaggedAddresses": svc["TaggedAddresses"] or None,
        "ServiceWeights": svc["Weights"],
        "ServiceMeta": svc["Meta"],
        "ServicePort": svc["Port"],
        "ServiceEnableTagOverride": svc["EnableTagOverride"],
        "ServiceProxy": svc["Proxy"],
        "ServiceConnect": svc["Connect"],
        "CreateIndex": svc["CreateIndex"],
        "ModifyIndex": svc["ModifyIndex"],
    }


def check_out(check: Row) -> Row:
    return {
        "Node": check["Node"],
        "CheckID": check["CheckID"],
        "Name": check["Name"],
        "Status": check["Status"],
        "Notes": check["Notes"],
        "Output": check["Output"],
        "ServiceID": check["ServiceID"],
        "ServiceName": check["ServiceName"],
        "ServiceTags": check["ServiceTags"],
        "Type": check["Type"],
        "Definition": check["Definition"],
        "CreateIndex": check["CreateIndex"],
        "ModifyIndex": check["ModifyIndex"],
    }


def check_service_node_out(node: Row, svc: Row, checks: list[Row]) -> Row:
    return {
        "Node": node_out(node),
        "Service": node_service_out(svc),
        "Checks": [check_out(c) for c in checks],
    }


def dir_entry_out(row: Row) -> Row:
    """A ``DirEntry`` with the value as bytes (JSON layers base64 it)."""
    out = {
        "LockIndex": row["LockIndex"],
        "Key": row["Key"],
        "Flags": row["Flags"],
        "Value": row["Value"],
        "CreateIndex": row["CreateIndex"],
        "ModifyIndex": row["ModifyIndex"],
    }
    if row.get("Session"):
        out["Session"] = row["Session"]
    return out


OutFunc = Callable[[Row], Row]
