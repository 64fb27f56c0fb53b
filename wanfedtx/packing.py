# -*- test-case-name: tests.unit.test_packing -*-
"""msgpack encoding of small hot-path messages with one reusable ``Packer`` per thread.

``msgpack.packb`` builds a new ``Packer`` for every call, and every ``Packer`` allocates a
256 KiB buffer of its own. An agent fixes glibc's ``mmap`` threshold at 128 KiB
(``wanfedtx.agent.limits``), so in an agent each such buffer is an ``mmap``, a page fault and a
``munmap``: more than the encoding itself. RPC frames, raft messages, raft log records, FSM
commands and gossip messages are encoded once or more per request or packet, so they share one
packer per thread here (the reactor thread and the raft writer thread each get their own: a
``Packer`` is not thread-safe).

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

#: What msgpack raises for bytes that are not one well-formed value Python can hold: its own
#: errors (``ExtraData``, ``FormatError``, ``StackError``, a truncated input, a bad UTF-8
#: string: all ``ValueError``) and ``TypeError`` for a map whose key is an array or a map
#: (a ``dict`` key must be hashable). Decoders of untrusted bytes catch exactly these.
DECODE_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError)

_per_thread = threading.local()


def pack(obj: Any) -> bytes:
    """``msgpack.packb(obj, use_bin_type=True)`` with this thread's reusable packer.

    Raises what ``packb`` raises (``TypeError``, ``ValueError``, ``OverflowError``); the packer
    is left empty and usable after an error."""
    return _pack(obj, "bin", True)


def pack_without_bin_type(obj: Any) -> bytes:
    """``msgpack.packb(obj, use_bin_type=False)`` (str and bytes both as raw, as go-msgpack's
    old spec that memberlist and serf speak) with this thread's reusable packer."""
    return _pack(obj, "raw", False)


def _pack(obj: Any, slot: str, use_bin_type: bool) -> bytes:
    packer = getattr(_per_thread, slot, None)
    if packer is None:
        packer = msgpack.Packer(use_bin_type=use_bin_type)
        setattr(_per_thread, slot, packer)
    out: bytes = packer.pack(obj)
    if len(out) > KEEP_LIMIT:
        setattr(_per_thread, slot, None)  # do not keep a large buffer for the next message
    return out
