"""Raft type 30 (``FederationStateRequestType``): upsert and delete of federation states.

The body is a msgpack ``FederationStateRequest`` ``{"Datacenter", "Op", "State"}`` as built by
:func:`wanfedtx.federation.structs.decode_request`. :func:`install` adds the handler to an FSM;
every server installs it before raft replays its log.
"""

from __future__ import annotations

from typing import Any

from wanfedtx.federation.structs import OP_DELETE, OP_UPSERT
from wanfedtx.fsm.commands import MessageType
from wanfedtx.fsm.errors import FSMError
from wanfedtx.fsm.machine import FSM
from wanfedtx.state import StateStore


def apply_federation_state(state: StateStore, index: int, req: Any) -> Any:
    """Apply one request at ``index``: True for an upsert, None for a delete."""
    op = req["Op"]
    if op == OP_UPSERT:
        state.federation_state_set(index, dict(req["State"]))
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
