# -*- test-case-name: tests.unit.connect.test_connect_ca_state -*-
"""Raft type 13 (``ConnectCARequestType``): the Connect CA's roots, configuration and the
built-in provider's state.

The body is a msgpack ``CARequest`` ``{"Op", "Index", "Config", "Roots", "ProviderState"}``.
Ops, as the reference: ``set-config`` (a CAS on ``Config.ModifyIndex`` when it is not 0),
``set-roots`` (a CAS on ``Index``, the roots table's index; exactly one active root),
``set-provider-state``, ``delete-provider-state``, ``set-roots-config`` (a rotation: the roots and
the configuration, both CAS-checked, in one write) and ``increment-provider-serial`` (returns
the raft index, which is the next certificate serial).
"""

from __future__ import annotations

from typing import Any

from wanfedtx.fsm.commands import MessageType
from wanfedtx.fsm.errors import FSMError
from wanfedtx.fsm.machine import FSM
from wanfedtx.state import StateStore

OP_SET_CONFIG = "set-config"
OP_SET_ROOTS = "set-roots"
OP_SET_PROVIDER_STATE = "set-provider-state"
OP_INCREMENT_SERIAL = "increment-provider-serial"
OP_SET_ROOTS_CONFIG = "set-roots-config"
OP_DELETE_PROVIDER_STATE = "delete-provider-state"

SERIAL_KEY = "connect-ca-builtin-serial"


def apply_ca_request(state: StateStore, index: int, req: Any) -> Any:
    op = req["Op"]
    if op == OP_SET_CONFIG:
        config = req["Config"]
        return state.ca_config_set(index, config, int(config.get("ModifyIndex") or 0))
    if op == OP_SET_ROOTS:
        return state.ca_roots_set_cas(index, int(req.get("Index") or 0), list(req["Roots"]))
    if op == OP_SET_PROVIDER_STATE:
        state.ca_provider_state_set(index, req["ProviderState"])
        return True
    if op == OP_SET_ROOTS_CONFIG:
        config = req["Config"]
        return state.ca_roots_config_set(index, int(req.get("Index") or 0), list(req["Roots"]),
                                         config, int(config.get("ModifyIndex") or 0))
    if op == OP_DELETE_PROVIDER_STATE:
        state.ca_provider_state_delete(index, str(req["ProviderState"]["ID"]))
        return True
    if op == OP_INCREMENT_SERIAL:
        with state.write():
            state.bump_index(SERIAL_KEY, index)
        return index
    return FSMError(f"Invalid CA operation '{op}'")


def install(fsm: FSM) -> None:
    """Let ``fsm`` apply type 13 (once; installing twice is an error)."""

    def handler(index: int, req: Any) -> Any:
        return apply_ca_request(fsm.state, index, req)

    fsm.register_handler(MessageType.CONNECT_CA, handler)
