# -*- test-case-name: tests.unit.state -*-
"""The state store: every table (catalog, KV, ...) behind one object.

Reads return ``(index, value)`` and take a :class:`~wanfedtx.state.watch.WatchSet` (or None);
writes take the raft index that produced them. Only the FSM writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from wanfedtx.state import snapshot as _snapshot
from wanfedtx.state.acl import ACLStore
from wanfedtx.state.catalog import CatalogStore
from wanfedtx.state.connect_ca import ConnectCAStore
from wanfedtx.state.federation import FederationStore
from wanfedtx.state.kvs import KVStore


class StateStore(CatalogStore, KVStore, FederationStore, ConnectCAStore, ACLStore):
    """All tables of one server."""

    def snapshot_chunks(self, chunk_size: int = _snapshot.CHUNK_SIZE) -> Iterator[bytes]:
        """The whole store as a chunked msgpack stream (see :mod:`wanfedtx.state.snapshot`)."""
        return _snapshot.encode(self.snapshot_records(), chunk_size)

    def restore_chunks(self, chunks: Iterable[bytes]) -> None:
        """Replace the store by a stream made by :meth:`snapshot_chunks`."""
        self.restore_records(list(_snapshot.decode(chunks)))
