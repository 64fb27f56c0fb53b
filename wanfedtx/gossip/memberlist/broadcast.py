# -*- test-case-name: tests.unit.gossip -*-
"""memberlist's TransmitLimitedQueue: queued gossip, fewest-transmitted first, newest first."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .node import retransmit_limit

# ------------------------------------------------------------------------------------------
# Broadcast queue (TransmitLimitedQueue)


@attrs.define(eq=False)
class _Broadcast:
    name: str | None
    msg: bytes
    seq: int
    transmits: int = 0
    on_done: Callable[[], None] | None = None


class BroadcastQueue:
    """Queued gossip: fewest-transmitted first, newest first; dropped after the retransmit limit."""

    def __init__(self, retransmit_mult: int, num_nodes: Callable[[], int]) -> None:
        self.retransmit_mult = retransmit_mult
        self.num_nodes = num_nodes
        self._items: list[_Broadcast] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(
        self, msg: bytes, name: str | None = None, on_done: Callable[[], None] | None = None
    ) -> None:
        if name is not None:
            for old in [b for b in self._items if b.name == name]:
                self._items.remove(old)
                if old.on_done is not None:
                    old.on_done()
        self._seq += 1
        self._items.append(_Broadcast(name, msg, self._seq, on_done=on_done))

    def get(self, overhead: int, limit: int) -> list[bytes]:
        if not self._items:
            return []
        lim = retransmit_limit(self.retransmit_mult, self.num_nodes())
        used = 0
        out: list[bytes] = []
        for b in sorted(self._items, key=lambda b: (b.transmits, -b.seq)):
            cost = overhead + len(b.msg)
            if used + cost > limit:
                continue
            used += cost
            out.append(b.msg)
            b.transmits += 1
            if b.transmits >= lim:
                self._items.remove(b)
                if b.on_done is not None:
                    b.on_done()
        return out

    def reset(self) -> None:
        self._items.clear()
