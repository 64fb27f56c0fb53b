# -*- test-case-name: tests.unit.state -*-
"""Catalog tables (nodes, services, checks) and their reads and writes.

Semantics follow the reference's state store: registering a service or check on an unknown node
creates the node from the request; deregistering a node removes its services and checks; a
write that changes nothing does not bump any index. Rows (see :mod:`wanfedtx.catalog.structs`
for their shape) are keyed case-insensitively on node name and service/check id.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from wanfedtx.state.base import StoreBase, register_schema
from wanfedtx.state.errors import InvalidMetadataError, MissingNodeError, MissingServiceError
from wanfedtx.state.table import IndexSpec, Row, TableSchema
from wanfedtx.state.validate import validate_service_meta
from wanfedtx.state.watch import WatchSet

NODES = "nodes"
SERVICES = "services"
CHECKS = "checks"

HEALTH_ANY = "any"
HEALTH_PASSING = "passing"
HEALTH_WARNING = "warning"
HEALTH_CRITICAL = "critical"
HEALTH_STATES = (HEALTH_PASSING, HEALTH_WARNING, HEALTH_CRITICAL)


def _lower(value: Any) -> str:
    return str(value).lower()


register_schema(TableSchema(name=NODES, primary=lambda r: _lower(r["Node"])))
register_schema(
    TableSchema(
        name=SERVICES,
        primary=lambda r: (_lower(r["Node"]), _lower(r["ID"])),
        indexes=(
            IndexSpec("node", lambda r: _lower(r["Node"])),
            IndexSpec("service", lambda r: _lower(r["Service"])),
            IndexSpec("kind", lambda r: _lower(r["Kind"])),
        ),
    )
)
register_schema(
    TableSchema(
        name=CHECKS,
        primary=lambda r: (_lower(r["Node"]), _lower(r["CheckID"])),
        indexes=(
            IndexSpec("node", lambda r: _lower(r["Node"])),
            IndexSpec("status", lambda r: r["Status"]),
            IndexSpec("service", lambda r: _lower(r["ServiceName"]) if r["ServiceName"] else None),
            IndexSpec(
                "node_service",
                lambda r: (_lower(r["Node"]), _lower(r["ServiceID"])) if r["ServiceID"] else None,
            ),
        ),
    )
)

_NODE_FIELDS = ("ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta")
_RAFT = ("CreateIndex", "ModifyIndex")


def _same(old: Row | None, new: Row) -> bool:
    if old is None:
        return False
    return all(old.get(k) == v for k, v in new.items() if k not in _RAFT)


def _stamp(old: Row | None, new: Row, idx: int) -> Row:
    row = dict(new)
    row["CreateIndex"] = old["CreateIndex"] if old is not None else idx
    row["ModifyIndex"] = idx
    return row


class CatalogStore(StoreBase):
    """Reads and writes of the catalog tables."""

    # -- writes --------------------------------------------------------------------------------

    def ensure_registration(self, idx: int, req: dict[str, Any]) -> None:
        """Apply a RegisterRequest (already normalised, see ``catalog.structs``)."""
        node_name = req["Node"]
        service: Row | None = req.get("Service")
        checks: list[Row] = list(req.get("Checks") or [])
        if req.get("Check"):
            checks.insert(0, req["Check"])
        node_key = _lower(node_name)
        # Validate everything before writing anything.
        if service is not None:
            try:
                validate_service_meta(service["Kind"], service["Meta"], False)
            except InvalidMetadataError as exc:
                raise InvalidMetadataError(
                    f"Invalid Service Meta for node {node_name} and serviceID {service['ID']}: "
                    f"{exc}"
                ) from exc
        services = self.tables[SERVICES]
        for check in checks:
            sid = check["ServiceID"]
            if not sid:
                continue
            in_req = service is not None and _lower(service["ID"]) == _lower(sid)
            if not in_req and services.get((node_key, _lower(sid))) is None:
                raise MissingServiceError(
                    f"Missing service registration for check {check['CheckID']!r}: "
                    f"service {sid!r} is not registered on node {node_name!r}"
                )
        with self.write():
            nodes = self.tables[NODES]
            existing_node = nodes.get(node_key)
            if existing_node is None or not req.get("SkipNodeUpdate"):
                new_node = {k: req[k] for k in _NODE_FIELDS if k != "Meta"}
                new_node["Meta"] = req["NodeMeta"]
                if not _same(existing_node, new_node):
                    self.insert(NODES, _stamp(existing_node, new_node, idx))
                    self.bump_index(NODES, idx)
            node_row = nodes.get(node_key)
            if node_row is None:  # inserted just above
                raise MissingNodeError(f"node {node_name!r} vanished while being registered")
            if service is not None:
                self._ensure_service(idx, node_row["Node"], service)
            for check in checks:
                self._ensure_check(idx, node_row["Node"], check)

    def _ensure_service(self, idx: int, node: str, service: Row) -> None:
        new = dict(service)
        new["Node"] = node
        pk = (_lower(node), _lower(new["ID"]))
        old = self.tables[SERVICES].get(pk)
        if _same(old, new):
            return
        self.insert(SERVICES, _stamp(old, new, idx))
        self.bump_index(SERVICES, idx)

    def _ensure_check(self, idx: int, node: str, check: Row) -> None:
        new = dict(check)
        new["Node"] = node
        if not new.get("Status"):
            new["Status"] = HEALTH_CRITICAL
        if new["ServiceID"]:
            svc = self.tables[SERVICES].get((_lower(node), _lower(new["ServiceID"])))
            if svc is None:  # validated before the write started
                raise MissingServiceError(f"Missing service registration {new['ServiceID']!r}")
            new["ServiceName"] = svc["Service"]
            new["ServiceTags"] = list(svc["Tags"])
        else:
            new["ServiceName"] = ""
            new["ServiceTags"] = []
        pk = (_lower(node), _lower(new["CheckID"]))
        old = self.tables[CHECKS].get(pk)
        if _same(old, new):
            return
        self.insert(CHECKS, _stamp(old, new, idx))
        self.bump_index(CHECKS, idx)

    def deregister(self, idx: int, node: str, service_id: str = "", check_id: str = "") -> None:
        """Remove a check, a service (with its checks) or a whole node; missing is a no-op."""
        node_key = _lower(node)
        if self.tables[NODES].get(node_key) is None:
            return
        with self.write():
            if service_id:
                self._delete_service(idx, node_key, _lower(service_id))
            if check_id:
                self._delete_checks(idx, [(node_key, _lower(check_id))])
            if not service_id and not check_id:
                for svc in self.tables[SERVICES].lookup("node", node_key):
                    self._delete_service(idx, node_key, _lower(svc["ID"]))
                checks = self.tables[CHECKS].lookup("node", node_key)
                self._delete_checks(idx, [(node_key, _lower(c["CheckID"])) for c in checks])
                self.delete(NODES, node_key)
                self.bump_index(NODES, idx)

    def _delete_service(self, idx: int, node_key: str, sid_key: str) -> None:
        if self.delete(SERVICES, (node_key, sid_key)) is None:
            return
        self.bump_index(SERVICES, idx)
        checks = self.tables[CHECKS].lookup("node_service", (node_key, sid_key))
        self._delete_checks(idx, [(node_key, _lower(c["CheckID"])) for c in checks])

    def _delete_checks(self, idx: int, pks: list[Hashable]) -> None:
        removed = [pk for pk in pks if self.delete(CHECKS, pk) is not None]
        if removed:
            self.bump_index(CHECKS, idx)

    # -- reads ---------------------------------------------------------------------------------

    def get_node(self, ws: WatchSet | None, node: str) -> tuple[int, Row | None]:
        return self.max_index(NODES), self.tables[NODES].get(_lower(node), ws)

    def list_nodes(self, ws: WatchSet | None) -> tuple[int, list[Row]]:
        rows = sorted(self.tables[NODES].all(ws), key=lambda r: r["Node"])
        return self.max_index(NODES), rows

    def list_services(self, ws: WatchSet | None) -> tuple[int, dict[str, list[str]]]:
        out: dict[str, set[str]] = {}
        for svc in self.tables[SERVICES].all(ws):
            out.setdefault(svc["Service"], set()).update(svc["Tags"])
        return self.max_index(SERVICES), {k: sorted(out[k]) for k in sorted(out)}

    def service_rows(self, ws: WatchSet | None, service: str) -> list[Row]:
        rows = self.tables[SERVICES].lookup("service", _lower(service), ws)
        return sorted(rows, key=lambda r: (r["Node"], r["ID"]))

    def service_nodes(self, ws: WatchSet | None, service: str) -> tuple[int, list[tuple[Row, Row]]]:
        """``(node, service)`` rows of every instance of ``service``."""
        self.tables[NODES].watch_table(ws)
        nodes = self.tables[NODES]
        out = []
        for svc in self.service_rows(ws, service):
            node = nodes.get(_lower(svc["Node"]))
            if node is not None:
                out.append((node, svc))
        return self.max_index(NODES, SERVICES), out

    def node_services(
        self, ws: WatchSet | None, node: str
    ) -> tuple[int, tuple[Row, list[Row]] | None]:
        idx = self.max_index(NODES, SERVICES)
        node_row = self.tables[NODES].get(_lower(node), ws)
        if node_row is None:
            return idx, None
        svcs = self.tables[SERVICES].lookup("node", _lower(node), ws)
        return idx, (node_row, sorted(svcs, key=lambda r: r["ID"]))

    def check_service_nodes(
        self, ws: WatchSet | None, service: str = "", kind: str | None = None
    ) -> tuple[int, list[tuple[Row, Row, list[Row]]]]:
        """``(node, service, checks)`` per instance, by service name or by service kind."""
        if kind is not None:
            svcs = sorted(
                self.tables[SERVICES].lookup("kind", _lower(kind), ws),
                key=lambda r: (r["Service"], r["Node"], r["ID"]),
            )
        else:
            svcs = self.service_rows(ws, service)
        self.tables[NODES].watch_table(ws)
        self.tables[CHECKS].watch_table(ws)
        out = []
        for svc in svcs:
            node = self.tables[NODES].get(_lower(svc["Node"]))
            if node is None:
                continue
            out.append((node, svc, self._instance_checks(svc)))
        return self.max_index(NODES, SERVICES, CHECKS), out

    def _instance_checks(self, svc: Row) -> list[Row]:
        node_key = _lower(svc["Node"])
        checks = [c for c in self.tables[CHECKS].lookup("node", node_key) if not c["ServiceID"]]
        checks += self.tables[CHECKS].lookup("node_service", (node_key, _lower(svc["ID"])))
        return sorted(checks, key=lambda c: c["CheckID"])

    def node_checks(self, ws: WatchSet | None, node: str) -> tuple[int, list[Row]]:
        rows = self.tables[CHECKS].lookup("node", _lower(node), ws)
        return self.max_index(CHECKS), sorted(rows, key=lambda c: c["CheckID"])

    def service_checks(self, ws: WatchSet | None, service: str) -> tuple[int, list[Row]]:
        rows = self.tables[CHECKS].lookup("service", _lower(service), ws)
        return self.max_index(CHECKS), sorted(rows, key=lambda c: (c["Node"], c["CheckID"]))

    def checks_in_state(self, ws: WatchSet | None, state: str) -> tuple[int, list[Row]]:
        if state == HEALTH_ANY:
            rows = self.tables[CHECKS].all(ws)
        else:
            rows = self.tables[CHECKS].lookup("status", state, ws)
        return self.max_index(CHECKS), sorted(rows, key=lambda c: (c["Node"], c["CheckID"]))
