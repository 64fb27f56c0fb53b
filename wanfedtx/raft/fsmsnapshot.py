"""The bytes of a raft snapshot: the FSM's snapshot chunks packed with msgpack, and back."""

from __future__ import annotations

import msgpack

from wanfedtx.raft.core import Snapshot
from wanfedtx.raft.interfaces import IRaftFSM


def pack_fsm_snapshot(fsm: IRaftFSM) -> bytes:
    """``fsm``'s snapshot chunks as one msgpack array."""
    out: bytes = msgpack.packb(list(fsm.snapshot()), use_bin_type=True)
    return out


def restore_fsm_snapshot(fsm: IRaftFSM, snap: Snapshot) -> None:
    """Restore ``fsm`` from ``snap`` (an empty snapshot restores an empty FSM)."""
    chunks = msgpack.unpackb(snap.data, raw=False) if snap.data else []
    fsm.restore(chunks, snap.index)
