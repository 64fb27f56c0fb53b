# -*- test-case-name: tests.unit.state -*-
"""The KV table, its tombstones, and KV reads and writes.

As the reference: a set keeps CreateIndex/LockIndex of an existing entry; check-and-set with
index 0 creates only; deleting leaves a tombstone so that prefix listings report a higher index
after a delete (tombstones are reaped by a later command, see ``fsm``).
"""

from __future__ import annotations

from typing import Any

from wanfedtx.state.base import StoreBase, register_schema
from wanfedtx.state.table import Row, TableSchema
from wanfedtx.state.watch import WatchSet

KVS = "kvs"
TOMBSTONES = "tombstones"

register_schema(TableSchema(name=KVS, primary=lambda r: r["Key"], ordered=True))
register_schema(TableSchema(name=TOMBSTONES, primary=lambda r: r["Key"], ordered=True))


class KVStore(StoreBase):
    """Reads and writes of the KV table."""

    # -- writes --------------------------------------------------------------------------------

    def kvs_set(self, idx: int, entry: dict[str, Any]) -> None:
        """Store ``entry`` (Key, Value bytes, Flags, Session) at ``idx``."""
        with self.write():
            existing = self.tables[KVS].get(entry["Key"])
            row = {
                "Key": entry["Key"],
                "Value": entry.get("Value"),
                "Flags": entry.get("Flags", 0),
                "Session": entry.get("Session", ""),
                "LockIndex": existing["LockIndex"] if existing is not None else 0,
                "CreateIndex": existing["CreateIndex"] if existing is not None else idx,
                "ModifyIndex": idx,
            }
            if existing is not None:
                row["Session"] = existing["Session"]
            self.insert(KVS, row)
            self.bump_index(KVS, idx)

    def kvs_set_cas(self, idx: int, entry: dict[str, Any]) -> bool:
        """Set only if ``entry['ModifyIndex']`` matches (0: only if the key does not exist)."""
        existing = self.tables[KVS].get(entry["Key"])
        cas = entry.get("ModifyIndex", 0)
        if cas == 0 and existing is not None:
            return False
        if cas != 0 and (existing is None or existing["ModifyIndex"] != cas):
            return False
        self.kvs_set(idx, entry)
        return True

    def kvs_delete(self, idx: int, key: str) -> None:
        with self.write():
            if self.delete(KVS, key) is None:
                return
            self.insert(TOMBSTONES, {"Key": key, "Index": idx})
            self.bump_index(KVS, idx)
            self.bump_index(TOMBSTONES, idx)

    def kvs_delete_cas(self, idx: int, cas: int, key: str) -> bool:
        """Delete only if the entry's ModifyIndex is ``cas``; a missing key counts as done."""
        existing = self.tables[KVS].get(key)
        if existing is None:
            return True
        if existing["ModifyIndex"] != cas:
            return False
        self.kvs_delete(idx, key)
        return True

    def kvs_delete_tree(self, idx: int, prefix: str) -> None:
        keys = [row["Key"] for row in self.tables[KVS].prefix(prefix)]
        if not keys:
            return
        with self.write():
            for key in keys:
                self.delete(KVS, key)
                self.insert(TOMBSTONES, {"Key": key, "Index": idx})
            self.bump_index(KVS, idx)
            self.bump_index(TOMBSTONES, idx)

    def reap_tombstones(self, idx: int) -> None:
        """Forget tombstones at or below ``idx``."""
        doomed = [row["Key"] for row in self.tables[TOMBSTONES].all() if row["Index"] <= idx]
        if not doomed:
            return
        with self.write():
            for key in doomed:
                self.delete(TOMBSTONES, key)

    # -- reads ---------------------------------------------------------------------------------

    def kvs_get(self, ws: WatchSet | None, key: str) -> tuple[int, Row | None]:
        return self.max_index(KVS, TOMBSTONES), self.tables[KVS].get(key, ws)

    def _graveyard_max(self, prefix: str, ws: WatchSet | None) -> int:
        best = 0
        for row in self.tables[TOMBSTONES].prefix(prefix, ws):
            best = max(best, row["Index"])
        return best

    def kvs_list(self, ws: WatchSet | None, prefix: str) -> tuple[int, list[Row]]:
        table_idx = self.max_index(KVS, TOMBSTONES)
        rows = list(self.tables[KVS].prefix(prefix, ws))
        if not prefix:
            return table_idx, rows
        sub = max([r["ModifyIndex"] for r in rows], default=0)
        sub = max(sub, self._graveyard_max(prefix, ws))
        return (sub or table_idx), rows

    def kvs_list_keys(
        self, ws: WatchSet | None, prefix: str, separator: str
    ) -> tuple[int, list[str]]:
        table_idx = self.max_index(KVS, TOMBSTONES)
        keys: list[str] = []
        sub = 0
        for row in self.tables[KVS].prefix(prefix, ws):
            sub = max(sub, row["ModifyIndex"])
            key = row["Key"]
            if separator:
                pos = key.find(separator, len(prefix))
                if pos >= 0:
                    key = key[: pos + len(separator)]
            if not keys or keys[-1] != key:
                keys.append(key)
        if not prefix:
            return table_idx, keys
        sub = max(sub, self._graveyard_max(prefix, ws))
        return (sub or table_idx), keys
