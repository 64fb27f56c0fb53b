# -*- test-case-name: tests.unit.state,tests.unit.federation.test_federation_state_struct -*-
"""The ``federation-states`` table: one FederationState per datacenter, and its reads and writes.

As the reference's state store: rows are keyed case-insensitively on ``Datacenter``; a set keeps
the CreateIndex of an existing row and sets ``PrimaryModifyIndex`` to the raft index when it is 0
(a direct write in the primary; replication sets it explicitly); deleting a missing row is a
no-op that does not bump the table index.

:class:`FederationState` is the typed value that crosses package borders (the store's API, the
FSM, the federation RPC endpoints, anti-entropy, replication, the gateway locator). The table
keeps its wire form (:meth:`FederationState.to_wire`: ``Datacenter``, ``MeshGateways``,
``UpdatedAt``, ``PrimaryModifyIndex``, ``CreateIndex``, ``ModifyIndex``), so snapshots, the
raft log and the RPC replies carry the same bytes as before the struct existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from wanfedtx.state.base import StoreBase, register_schema
from wanfedtx.state.errors import MissingDatacenterError
from wanfedtx.state.table import Row, TableSchema
from wanfedtx.state.watch import WatchSet

FEDERATION_STATES = "federation-states"

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero ``time.Time`` as RFC 3339: an ``UpdatedAt`` never set."""


@attrs.frozen
class FederationState:
    """One datacenter's federation state (the reference's ``structs.FederationState``).

    ``mesh_gateways`` are CheckServiceNodes in their wire shape (``{"Node", "Service",
    "Checks"}``, as :func:`wanfedtx.catalog.structs.check_service_node_out` builds them), never
    mutated. ``updated_at`` is an RFC 3339 UTC string. Validating untrusted input is
    :func:`wanfedtx.federation.structs.decode_federation_state`'s job; :meth:`from_wire` reads
    trusted data (stored rows, FSM bodies already checked when they were proposed).
    """

    datacenter: str
    mesh_gateways: tuple[Row, ...] = ()
    updated_at: str = ZERO_TIME
    primary_modify_index: int = 0
    create_index: int = 0
    modify_index: int = 0

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> FederationState:
        """The struct of a wire/stored dict; a missing field takes its zero value."""
        return cls(
            datacenter=str(obj.get("Datacenter") or ""),
            mesh_gateways=tuple(obj.get("MeshGateways") or ()),
            updated_at=str(obj.get("UpdatedAt") or ZERO_TIME),
            primary_modify_index=int(obj.get("PrimaryModifyIndex") or 0),
            create_index=int(obj.get("CreateIndex") or 0),
            modify_index=int(obj.get("ModifyIndex") or 0),
        )

    def to_wire(self) -> Row:
        """The msgpack/JSON dict, every field present, in the reference's field order."""
        return {
            "Datacenter": self.datacenter,
            "MeshGateways": list(self.mesh_gateways),
            "UpdatedAt": self.updated_at,
            "PrimaryModifyIndex": self.primary_modify_index,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


register_schema(TableSchema(name=FEDERATION_STATES, primary=lambda r: str(r["Datacenter"]).lower()))


class FederationStore(StoreBase):
    """Reads and writes of the federation-states table."""

    # -- writes --------------------------------------------------------------------------------

    def federation_state_set(self, idx: int, state: FederationState) -> None:
        self.federation_state_batch_set(idx, [state])

    def federation_state_batch_set(self, idx: int, states: list[FederationState]) -> None:
        for state in states:
            if not state.datacenter:
                raise MissingDatacenterError()
        with self.write():
            table = self.tables[FEDERATION_STATES]
            for state in states:
                existing = table.get(state.datacenter.lower())
                row = attrs.evolve(
                    state,
                    create_index=existing["CreateIndex"] if existing is not None else idx,
                    modify_index=idx,
                    primary_modify_index=state.primary_modify_index or idx,
                )
                self.insert(FEDERATION_STATES, row.to_wire())
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

    def federation_state_get(
        self, ws: WatchSet | None, datacenter: str
    ) -> tuple[int, FederationState | None]:
        """(table index, the state of ``datacenter`` or None); watches that row."""
        row = self.tables[FEDERATION_STATES].get(datacenter.lower(), ws)
        state = None if row is None else FederationState.from_wire(row)
        return self.max_index(FEDERATION_STATES), state

    def federation_state_list(self, ws: WatchSet | None) -> tuple[int, list[FederationState]]:
        """(table index, every state sorted by lowercased datacenter); watches the table."""
        rows = sorted(
            self.tables[FEDERATION_STATES].all(ws), key=lambda r: str(r["Datacenter"]).lower()
        )
        return self.max_index(FEDERATION_STATES), [FederationState.from_wire(r) for r in rows]
