# -*- test-case-name: tests.unit.state.test_state_connect_ca -*-
"""The Connect CA tables: ``connect-ca-roots``, ``connect-ca-config`` and ``connect-ca-builtin``.

As the reference's state store:

* ``connect-ca-roots`` holds the CA roots (``CARoot`` rows keyed by ``ID``). A set replaces the
  whole set, keeps the CreateIndex of roots already known, and needs exactly one active root.
* ``connect-ca-config`` holds one ``CAConfiguration`` row (key ``"config"``), ``ClusterID``
  included (it is not shown by the HTTP API but is kept here).
* ``connect-ca-builtin`` holds the built-in provider's state (``CAConsulProviderState`` rows
  keyed by ``ID``): **the CA private keys**, so they are in every snapshot.

Rows are stored in their wire (msgpack/JSON) shape, so snapshots carry them as they are.
"""

from __future__ import annotations

from typing import Any

from wanfedtx.state.base import StoreBase, register_schema
from wanfedtx.state.errors import StateError
from wanfedtx.state.table import Row, TableSchema
from wanfedtx.state.watch import WatchSet

CA_ROOTS = "connect-ca-roots"
CA_CONFIG = "connect-ca-config"
CA_BUILTIN = "connect-ca-builtin"

_CONFIG_KEY = "config"

register_schema(TableSchema(name=CA_ROOTS, primary=lambda r: str(r["ID"])))
register_schema(TableSchema(name=CA_CONFIG, primary=lambda r: _CONFIG_KEY))
register_schema(TableSchema(name=CA_BUILTIN, primary=lambda r: str(r["ID"])))


class CARootsError(StateError):
    """A roots write the store refuses (``there must be exactly one active CA``)."""


class ConnectCAStore(StoreBase):
    """Reads and writes of the Connect CA tables."""

    # -- roots -----------------------------------------------------------------------------

    def ca_roots_set_cas(self, idx: int, cas_index: int, roots: list[Row]) -> bool:
        """Replace the roots if the table's index is still ``cas_index`` (0: unconditional
        only when the table is empty or ``cas_index`` matches); False on a miss."""
        if sum(1 for r in roots if r.get("Active")) != 1:
            raise CARootsError("there must be exactly one active CA")
        if self.max_index(CA_ROOTS) != cas_index:
            return False
        with self.write():
            table = self.tables[CA_ROOTS]
            old = {str(r["ID"]): r for r in table.all()}
            for rid in old:
                self.delete(CA_ROOTS, rid)
            for root in roots:
                row = dict(root)
                known = old.get(str(row["ID"]))
                row["CreateIndex"] = known["CreateIndex"] if known is not None else idx
                row["ModifyIndex"] = idx
                self.insert(CA_ROOTS, row)
            self.bump_index(CA_ROOTS, idx)
        return True

    def ca_roots_config_set(self, idx: int, cas_index: int, roots: list[Row], config: Row,
                            config_cas: int) -> bool:
        """Roots and configuration in one write (a rotation): both CAS checks first, then
        both writes, so either both change or neither; False on a miss."""
        if sum(1 for r in roots if r.get("Active")) != 1:
            raise CARootsError("there must be exactly one active CA")
        existing = self.tables[CA_CONFIG].get(_CONFIG_KEY)
        if self.max_index(CA_ROOTS) != cas_index:
            return False
        if config_cas and (existing is None or existing["ModifyIndex"] != config_cas):
            return False
        with self.write():
            self.ca_roots_set_cas(idx, cas_index, roots)
            self.ca_config_set(idx, config, config_cas)
        return True

    def ca_roots(self, ws: WatchSet | None) -> tuple[int, list[Row]]:
        """(max index of the roots and config tables, roots by CreateIndex); watches both."""
        rows = sorted(self.tables[CA_ROOTS].all(ws), key=lambda r: (r["CreateIndex"], r["ID"]))
        self.tables[CA_CONFIG].watch_table(ws)
        return self.max_index(CA_ROOTS, CA_CONFIG), rows

    def ca_active_root(self) -> Row | None:
        for row in self.tables[CA_ROOTS].all():
            if row.get("Active"):
                return row
        return None

    # -- configuration -----------------------------------------------------------------------

    def ca_config_set(self, idx: int, config: Row, cas_index: int = 0) -> bool:
        """Store the CA configuration (a CAS on its ModifyIndex when ``cas_index`` is not 0);
        an empty ``ClusterID`` keeps the stored one."""
        existing = self.tables[CA_CONFIG].get(_CONFIG_KEY)
        if cas_index and (existing is None or existing["ModifyIndex"] != cas_index):
            return False
        row: dict[str, Any] = dict(config)
        if not row.get("ClusterID") and existing is not None:
            row["ClusterID"] = existing.get("ClusterID", "")
        row["CreateIndex"] = existing["CreateIndex"] if existing is not None else idx
        row["ModifyIndex"] = idx
        with self.write():
            self.insert(CA_CONFIG, row)
            self.bump_index(CA_CONFIG, idx)
        return True

    def ca_config(self, ws: WatchSet | None) -> tuple[int, Row | None]:
        return self.max_index(CA_CONFIG), self.tables[CA_CONFIG].get(_CONFIG_KEY, ws)

    # -- built-in provider state -------------------------------------------------------------

    def ca_provider_state_set(self, idx: int, state: Row) -> None:
        with self.write():
            existing = self.tables[CA_BUILTIN].get(str(state["ID"]))
            row = dict(state)
            row["CreateIndex"] = existing["CreateIndex"] if existing is not None else idx
            row["ModifyIndex"] = idx
            self.insert(CA_BUILTIN, row)
            self.bump_index(CA_BUILTIN, idx)

    def ca_provider_state_delete(self, idx: int, provider_id: str) -> None:
        """Drop a provider's state (its keys) once a rotation replaced it."""
        if self.tables[CA_BUILTIN].get(provider_id) is None:
            return
        with self.write():
            self.delete(CA_BUILTIN, provider_id)
            self.bump_index(CA_BUILTIN, idx)

    def ca_provider_state(self, provider_id: str) -> Row | None:
        return self.tables[CA_BUILTIN].get(provider_id)
