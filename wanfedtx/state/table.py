# -*- test-case-name: tests.unit.state -*-
"""A small generic in-memory table: rows by primary key, secondary indexes, watch channels.

Rows are plain msgpack-able dicts that are never mutated once stored (writers store new dicts),
so readers may hand them out without copying. Each index maps a key computed from the row to the
primary keys of the rows having it. Adding a table is declaring a :class:`TableSchema`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import attrs

from wanfedtx.state.watch import ChannelRegistry, WatchChannel, WatchSet

Row = dict[str, Any]
"""A stored or wire-shaped record (msgpack/JSON-able dict): the one row alias of the package;
every other module imports it from here."""
KeyFunc = Callable[[Row], Hashable | None]


@attrs.frozen
class IndexSpec:
    """A secondary index: ``key(row)`` is the index key, or None to leave the row out."""

    name: str
    key: KeyFunc


@attrs.frozen
class TableSchema:
    """How to build a table: its name, primary key, secondary indexes.

    ``ordered`` keeps primary keys sorted (they must be strings) so prefix scans and prefix
    watches work, as the KV store needs.
    """

    name: str
    primary: KeyFunc
    indexes: Sequence[IndexSpec] = ()
    ordered: bool = False


class Table:
    """Rows of one schema, with indexes and watch channels."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.rows: dict[Hashable, Row] = {}
        self._index: dict[str, dict[Hashable, dict[Hashable, None]]] = {
            spec.name: {} for spec in schema.indexes
        }
        self._sorted: list[str] = []
        self._table_watch = ChannelRegistry()
        self._key_watch = ChannelRegistry()  # keys: ("id", pk) or (index name, key)
        self._prefix_watch = ChannelRegistry()

    @property
    def name(self) -> str:
        return self.schema.name

    def __len__(self) -> int:
        return len(self.rows)

    # -- reads ---------------------------------------------------------------------------------

    def watch_table(self, ws: WatchSet | None) -> None:
        if ws is not None:
            ws.add(self._table_watch.get(None))

    def get(self, pk: Hashable, ws: WatchSet | None = None) -> Row | None:
        if ws is not None:
            ws.add(self._key_watch.get(("id", pk)))
        return self.rows.get(pk)

    def lookup(self, index: str, key: Hashable, ws: WatchSet | None = None) -> list[Row]:
        if ws is not None:
            ws.add(self._key_watch.get((index, key)))
        pks = self._index[index].get(key, {})
        return [self.rows[pk] for pk in pks]

    def all(self, ws: WatchSet | None = None) -> list[Row]:
        self.watch_table(ws)
        if self.schema.ordered:
            return [self.rows[pk] for pk in self._sorted]
        return list(self.rows.values())

    def prefix(self, prefix: str, ws: WatchSet | None = None) -> Iterator[Row]:
        """Rows whose (string) primary key starts with ``prefix``, in key order."""
        if not self.schema.ordered:
            raise TypeError(f"table {self.name} is not ordered; prefix scans need ordered=True")
        if ws is not None:
            ws.add(self._prefix_watch.get(prefix))
        start = bisect.bisect_left(self._sorted, prefix)
        for pk in self._sorted[start:]:
            if not pk.startswith(prefix):
                break
            yield self.rows[pk]

    # -- writes (collect channels to fire into ``fired``) --------------------------------------

    def insert(self, row: Row, fired: list[WatchChannel]) -> Row | None:
        """Insert or replace by primary key; returns the replaced row."""
        pk = self.schema.primary(row)
        if pk is None:
            raise ValueError(f"row for table {self.name} has no primary key")
        old = self.rows.get(pk)
        if old is not None:
            self._unindex(pk, old, fired)
        elif self.schema.ordered:
            bisect.insort(self._sorted, str(pk))
        self.rows[pk] = row
        for spec in self.schema.indexes:
            key = spec.key(row)
            if key is not None:
                self._index[spec.name].setdefault(key, {})[pk] = None
                self._pop(self._key_watch, (spec.name, key), fired)
        self._touch(pk, fired)
        return old

    def delete(self, pk: Hashable, fired: list[WatchChannel]) -> Row | None:
        old = self.rows.pop(pk, None)
        if old is None:
            return None
        self._unindex(pk, old, fired)
        if self.schema.ordered:
            i = bisect.bisect_left(self._sorted, str(pk))
            del self._sorted[i]
        self._touch(pk, fired)
        return old

    def _unindex(self, pk: Hashable, row: Row, fired: list[WatchChannel]) -> None:
        for spec in self.schema.indexes:
            key = spec.key(row)
            if key is None:
                continue
            bucket = self._index[spec.name].get(key)
            if bucket is not None:
                bucket.pop(pk, None)
                if not bucket:
                    del self._index[spec.name][key]
            self._pop(self._key_watch, (spec.name, key), fired)

    def _touch(self, pk: Hashable, fired: list[WatchChannel]) -> None:
        self._pop(self._table_watch, None, fired)
        self._pop(self._key_watch, ("id", pk), fired)
        if self.schema.ordered and len(self._prefix_watch):
            key = str(pk)
            for i in range(len(key) + 1):
                self._pop(self._prefix_watch, key[:i], fired)

    @staticmethod
    def _pop(registry: ChannelRegistry, key: Hashable, fired: list[WatchChannel]) -> None:
        channel = registry.pop(key)
        if channel is not None:
            fired.append(channel)

    def abandon(self) -> list[WatchChannel]:
        """Every channel of this table (used when the whole store is replaced)."""
        return (
            self._table_watch.pop_all() + self._key_watch.pop_all() + self._prefix_watch.pop_all()
        )
