# -*- test-case-name: tests.unit.state -*-
"""The ``federation-states`` table: one FederationState per datacenter, and its reads and writes.

As the reference's state store: rows are keyed case-insensitively on ``Datacenter``; a set keeps
the CreateIndex of an existing row and sets ``PrimaryModifyIndex`` to the raft index when it is 0
(a direct write in the primary; replication sets it explicitly); deleting a missing row is a
no-op that does not bump the table index. Rows are the shapes built by
:mod:`wanfedtx.federation.structs` (``Datacenter``, ``MeshGateways``, ``UpdatedAt``,
``PrimaryModifyIndex``, ``CreateIndex``, ``ModifyIndex``).
"""

from __future__ import annotations

from typing import Any

from wanfedtx.state.base import StoreBase, register_schema
from wanfedtx.state.errors import MissingDatacenterError
from wanfedtx.state.table import Row, TableSchema
from wanfedtx.state.watch import WatchSet

FEDERATION_STATES = "federation-states"

register_schema(TableSchema(name=FEDERATION_STATES, primary=lambda r: str(r["Datacenter"]).lower()))


class FederationStore(StoreBase):
    """Reads and writes of the federation-states table."""

    # -- writes --------------------------------------------------------------------------------

    def federation_state_set(self, idx: int, state: dict[str, Any]) -> None:
        self.federation_state_batch_set(idx, [state])

    def federation_state_batch_set(self, idx: int, states: list[dict[str, Any]]) -> None:
        for state in states:
            if not state.get("Datacenter"):
                raise MissingDatacenterError()
        with self.write():
            table = self.tables[FEDERATION_STATES]
            for state in states:
                existing = table.get(str(state["Datacenter"]).lower())
                row = dict(state)
                row["CreateIndex"] = existing["CreateIndex"] if existing is not None else idx
                row["ModifyIndex"] = idx
                if not row.get("PrimaryModifyIndex"):
                    row["PrimaryModifyIndex"] = idx
                self.insert(FEDERATION_STATES, row)
            self.bump_index(FEDERATION_STATES, idx)

    def federation_state_delete(self, idx: int, datacenter: str) -> None:
        self.federation_state_batch_delete(idx, [datacenter])

    def federation_state_batch_delete(self, idx: int, datacenters: list[str]) -> None:
        with self.write():
            removed = [
                dc for dc in datacenters if self.delete(FEDERATION_STATES, dc.lower()) is not None
            ]
            if removed:
                self.bump_index(FEDERATION_STATES, idx)

    # -- reads ---------------------------------------------------------------------------------

    def federation_state_get(self, ws: WatchSet | None, datacenter: str) -> tuple[int, Row | None]:
        """(table index, the state of ``datacenter`` or None); watches that row."""
        row = self.tables[FEDERATION_STATES].get(datacenter.lower(), ws)
        return self.max_index(FEDERATION_STATES), row

    def federation_state_list(self, ws: WatchSet | None) -> tuple[int, list[Row]]:
        """(table index, every state sorted by lowercased datacenter); watches the table."""
        rows = sorted(
            self.tables[FEDERATION_STATES].all(ws), key=lambda r: str(r["Datacenter"]).lower()
        )
        return self.max_index(FEDERATION_STATES), rows
