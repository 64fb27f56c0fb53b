# -*- test-case-name: tests.unit.raft.test_raft_linearizability -*-
"""A linearizability checker for register histories (Wing & Gong search with Lowe's memoization,
as in Knossos/Porcupine), used to check histories recorded against a raft cluster.

A history is a list of ``Op``: ``put`` (write ``value``) or ``get`` (read returned ``value``), each
with its invocation and completion times. An operation whose outcome is unknown (a write whose
reply was lost) has ``complete = inf``: it may take effect at any point after its invocation, or
never. Failed operations that certainly had no effect must be left out of the history. Keys are
independent registers (linearizability is local), so ``check_history`` checks key by key.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable

import attrs


@attrs.frozen
class Op:
    key: Hashable
    kind: str  # "put" | "get"
    value: Hashable
    invoke: float
    complete: float = math.inf  # inf: outcome unknown

    @property
    def unknown(self) -> bool:
        return math.isinf(self.complete)


@attrs.frozen
class Result:
    ok: bool
    key: Hashable | None = None
    detail: str = ""


def check_register(ops: list[Op], initial: Hashable = None, max_states: int = 2_000_000) -> bool:
    """True iff the single-register history is linearizable (raises if the search is too big).

    Unknown reads have no effect and are dropped; so are unknown writes whose value no read
    returned (they can always be placed "never"; values must be unique per write).
    """
    observed = {o.value for o in ops if o.kind == "get" and not o.unknown}
    ops = [o for o in ops if not (o.unknown and (o.kind == "get" or o.value not in observed))]
    n = len(ops)
    by_invoke = sorted(range(n), key=lambda i: ops[i].invoke)
    by_complete = sorted(range(n), key=lambda i: ops[i].complete)
    must = 0
    for i in range(n):
        if not ops[i].unknown:
            must |= 1 << i
    seen: set[tuple[int, Hashable]] = set()
    # state: (linearized bitmask, register value, low-water positions in both orders)
    stack: list[tuple[int, Hashable, int, int]] = [(0, initial, 0, 0)]
    visited = 0
    while stack:
        done, state, lw_c, lw_i = stack.pop()
        if done & must == must:
            return True
        visited += 1
        if visited > max_states:
            raise RuntimeError(f"linearizability search exceeded {max_states} states")
        while lw_c < n and done >> by_complete[lw_c] & 1:
            lw_c += 1
        while lw_i < n and done >> by_invoke[lw_i] & 1:
            lw_i += 1
        # the earliest completion among operations not yet linearized bounds the candidates
        horizon = ops[by_complete[lw_c]].complete if lw_c < n else math.inf
        for pos in range(lw_i, n):
            i = by_invoke[pos]
            o = ops[i]
            if o.invoke > horizon:
                break
            if done >> i & 1:
                continue
            if o.kind == "put":
                key = (done | 1 << i, o.value)
            elif o.value == state:
                key = (done | 1 << i, state)
            else:
                continue
            if key not in seen:
                seen.add(key)
                stack.append((key[0], key[1], lw_c, lw_i))
    return False


def check_history(ops: Iterable[Op], initial: Hashable = None) -> Result:
    by_key: dict[Hashable, list[Op]] = defaultdict(list)
    for o in ops:
        by_key[o.key].append(o)
    for key, kops in sorted(by_key.items(), key=lambda kv: str(kv[0])):
        if not check_register(kops, initial):
            return Result(False, key, f"history of key {key!r} ({len(kops)} ops) is not "
                                      "linearizable")
    return Result(True)
