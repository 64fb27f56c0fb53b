# -*- test-case-name: tests.unit.state -*-
"""The core of the state store: the set of tables, the ``index`` table, write batches.

Tables are declared with :func:`register_schema`; a new kind of data (federation states, ...) is
one schema plus its read/write methods. Each write runs inside :meth:`StoreBase.write`, which
fires the watch channels it touched only once the write has completed.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager

from wanfedtx.state.errors import SnapshotFormatError
from wanfedtx.state.table import Row, Table, TableSchema
from wanfedtx.state.watch import WatchChannel, WatchSet, fire_all

INDEX_TABLE = "index"

_SCHEMAS: dict[str, TableSchema] = {}


def register_schema(schema: TableSchema) -> TableSchema:
    """Declare a table; stores created afterwards have it."""
    if schema.name in _SCHEMAS and _SCHEMAS[schema.name] is not schema:
        raise ValueError(f"table {schema.name!r} is already registered")
    _SCHEMAS[schema.name] = schema
    return schema


register_schema(TableSchema(name=INDEX_TABLE, primary=lambda row: row["Key"]))


def registered_schemas() -> list[TableSchema]:
    return list(_SCHEMAS.values())


class StoreBase:
    """Tables by name plus the max index of each in the ``index`` table."""

    def __init__(self, schemas: Iterable[TableSchema] | None = None) -> None:
        self._schemas = list(schemas) if schemas is not None else registered_schemas()
        self.tables: dict[str, Table] = {s.name: Table(s) for s in self._schemas}
        self._fired: list[WatchChannel] | None = None

    def table(self, name: str) -> Table:
        return self.tables[name]

    # -- index table ---------------------------------------------------------------------------

    def max_index(self, *names: str, ws: WatchSet | None = None) -> int:
        """The highest index recorded for any of the named tables (0 if none)."""
        idx_table = self.tables[INDEX_TABLE]
        best = 0
        for name in names:
            row = idx_table.get(name, ws)
            if row is not None and row["Value"] > best:
                best = row["Value"]
        return best

    def bump_index(self, name: str, idx: int) -> None:
        """Record that table ``name`` changed at raft index ``idx`` (never lowers it)."""
        fired = self._require_write()
        current = self.tables[INDEX_TABLE].get(name)
        if current is None or current["Value"] < idx:
            self.tables[INDEX_TABLE].insert({"Key": name, "Value": idx}, fired)

    # -- writes --------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[list[WatchChannel]]:
        """A write batch: channels touched inside are fired when the batch ends."""
        if self._fired is not None:
            yield self._fired
            return
        fired: list[WatchChannel] = []
        self._fired = fired
        try:
            yield fired
        finally:
            self._fired = None
            fire_all(fired)

    def _require_write(self) -> list[WatchChannel]:
        if self._fired is None:
            raise RuntimeError("state writes must run inside StateStore.write()")
        return self._fired

    def insert(self, table: str, row: Row) -> Row | None:
        return self.tables[table].insert(row, self._require_write())

    def delete(self, table: str, pk: Hashable) -> Row | None:
        return self.tables[table].delete(pk, self._require_write())

    # -- snapshot / restore --------------------------------------------------------------------

    def snapshot_records(self) -> Iterator[tuple[str, Row]]:
        """A point-in-time copy of every row, as ``(table name, row)``; index table last."""
        copies = [(name, table.all()) for name, table in self.tables.items() if name != INDEX_TABLE]
        copies.append((INDEX_TABLE, self.tables[INDEX_TABLE].all()))
        return ((name, row) for name, rows in copies for row in rows)

    def restore_records(self, records: Iterable[tuple[str, Row]]) -> None:
        """Replace the whole store by ``records``; on a bad record nothing changes.

        Every watch on the old store fires (readers re-run against the new data).
        """
        tables = {s.name: Table(s) for s in self._schemas}
        scratch: list[WatchChannel] = []
        try:
            for name, row in records:
                table = tables.get(name)
                if table is None:
                    raise SnapshotFormatError(f"snapshot has rows for unknown table {name!r}")
                if not isinstance(row, dict):
                    raise SnapshotFormatError(f"snapshot row for table {name!r} is not a map")
                table.insert(row, scratch)
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotFormatError(f"snapshot row could not be restored: {exc!r}") from exc
        old = self.tables
        self.tables = tables
        for table in old.values():
            fire_all(table.abandon())
