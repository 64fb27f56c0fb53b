# -*- test-case-name: tests.unit.test_packing -*-
"""msgpack encoding of small hot-path messages with one reusable ``Packer`` per thread.

``msgpack.packb`` builds a new ``Packer`` for every call, and every ``Packer`` allocates a
256 KiB buffer of its own; in a process whose heap is busy that allocation costs about as much
as the encoding. RPC frames, raft messages, raft log records and FSM commands are encoded once
or more per request, so they share one packer per thread here (the reactor thread and the raft
writer thread each get their own: a ``Packer`` is not thread-safe).

A packer keeps its buffer at the largest message it encoded. After a message larger than
``KEEP_LIMIT`` the thread's packer is replaced, so one large snapshot chunk or batch does not
hold its size in memory for the life of the process. Large one-off encodings (snapshots) keep
using ``msgpack.packb``.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

#: a packer that encoded more than this many bytes is dropped after the call
KEEP_LIMIT = 1 << 20

_per_thread = threading.local()


def pack(obj: Any) -> bytes:
    """``msgpack.packb(obj, use_bin_type=True)`` with this thread's reusable packer.

    Raises what ``packb`` raises (``TypeError``, ``ValueError``, ``OverflowError``); the packer
    is left empty and usable after an error."""
    packer = getattr(_per_thread, "packer", None)
    if packer is None:
        packer = _per_thread.packer = msgpack.Packer(use_bin_type=True)
    out: bytes = packer.pack(obj)
    if len(out) > KEEP_LIMIT:
        _per_thread.packer = None
    return out
