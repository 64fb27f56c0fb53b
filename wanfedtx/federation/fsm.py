# -*- test-case-name: tests.unit.federation.test_federation_state -*-
"""Raft type 30 (``FederationStateRequestType``): upsert and delete of federation states.

The body is a msgpack ``FederationStateRequest`` ``{"Datacenter", "Op", "State"}`` as built by
:func:`wanfedtx.federation.structs.decode_request`. :func:`install` adds the handler to an FSM;
every server installs it before raft replays its log.
"""

from __future__ import annotations

import time
from typing import Any

from wanfedtx.federation.structs import OP_DELETE, OP_UPSERT, FederationState
from wanfedtx.fsm.commands import MessageType
from wanfedtx.fsm.errors import FSMError
from wanfedtx.fsm.machine import FSM
from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.state import StateStore


def apply_federation_state(
    state: StateStore, index: int, req: Any, metrics: Registry = REGISTRY
) -> Any:
    """Apply one request at ``index``: True for an upsert, None for a delete.

    Timed as ``fsm.federation_state.<dc>`` with label ``op``.
    """
    op = req["Op"]
    if op not in (OP_UPSERT, OP_DELETE):
        return FSMError(f"invalid federation state operation type: {op}")
    dc = str((req.get("State") or {}).get("Datacenter") or req.get("Datacenter") or "")
    timer = metrics.summary(
        f"fsm.federation_state.{dc}", "Time to apply a federation state (seconds)", ("op",)
    )
    start = time.perf_counter()
    try:
        return _apply(state, index, req, op)
    finally:
        timer.observe(time.perf_counter() - start, op=op)


def _apply(state: StateStore, index: int, req: Any, op: str) -> Any:
    if op == OP_UPSERT:
        state.federation_state_set(index, FederationState.from_wire(req["State"]))
        return True
    if op == OP_DELETE:
        state.federation_state_delete(index, req["State"]["Datacenter"])
        return None
    return FSMError(f"invalid federation state operation type: {op}")


def install(fsm: FSM) -> None:
    """Let ``fsm`` apply type 30 (once; installing twice is an error)."""

    def handler(index: int, req: Any) -> Any:
        return apply_federation_state(fsm.state, index, req)

    fsm.register_handler(MessageType.FEDERATION_STATE, handler)
