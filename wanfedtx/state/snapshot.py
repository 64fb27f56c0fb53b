# -*- test-case-name: tests.unit.state.test_state_store -*-
"""Encoding of state-store snapshots as a chunked msgpack stream.

Layout: a header map ``{"Format": "wanfedtx-state", "Version": 1}`` followed by one
``[table name, row]`` array per row. :func:`encode` yields chunks of about ``chunk_size`` bytes so a
large store is never one big buffer; :func:`decode` accepts chunks of any size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgpack

from wanfedtx.packing import DECODE_ERRORS
from wanfedtx.state.errors import SnapshotFormatError
from wanfedtx.state.table import Row

FORMAT = "wanfedtx-state"
VERSION = 1
CHUNK_SIZE = 64 * 1024


def encode(records: Iterable[tuple[str, Row]], chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    packer = msgpack.Packer(use_bin_type=True)
    buf = bytearray(packer.pack({"Format": FORMAT, "Version": VERSION}))
    for name, row in records:
        buf += packer.pack([name, row])
        if len(buf) >= chunk_size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def decode(chunks: Iterable[bytes]) -> Iterator[tuple[str, Row]]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, use_list=True)
    header_seen = False
    total = 0
    for chunk in chunks:
        total += len(chunk)
        unpacker.feed(chunk)
        try:
            for item in unpacker:
                if not header_seen:
                    _check_header(item)
                    header_seen = True
                    continue
                if (
                    not isinstance(item, list)
                    or len(item) != 2
                    or not isinstance(item[0], str)
                    or not isinstance(item[1], dict)
                ):
                    raise SnapshotFormatError("snapshot record is not [table, row]")
                yield item[0], item[1]
        except DECODE_ERRORS as exc:
            raise SnapshotFormatError(f"snapshot stream is corrupt: {exc}") from exc
    if not header_seen:
        raise SnapshotFormatError("snapshot stream is empty (no header)")
    if unpacker.tell() != total:
        raise SnapshotFormatError("snapshot stream ends in the middle of a record")


def _check_header(item: Any) -> None:
    if not isinstance(item, dict) or item.get("Format") != FORMAT:
        raise SnapshotFormatError(f"not a {FORMAT} snapshot (bad header)")
    if item.get("Version") != VERSION:
        raise SnapshotFormatError(
            f"snapshot version {item.get('Version')!r} is not supported (want {VERSION})"
        )
