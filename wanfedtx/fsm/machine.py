# -*- test-case-name: tests.unit.agent.test_agent_ae_model,tests.unit.agent.test_agent_local_ae -*-
"""The FSM raft drives: ``apply(index, command_bytes)``, ``snapshot()``, ``restore(chunks)``.

``apply`` returns the command's result (True/False for check-and-set, None otherwise) or, when
the state store refused the write, the exception instance, as the reference returns errors as
apply responses instead of failing raft. Unknown command types raise unless flagged ignorable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from twisted.logger import Logger

from wanfedtx.fsm.commands import (
    IGNORE_UNKNOWN_FLAG,
    KVS_CAS,
    KVS_DELETE,
    KVS_DELETE_CAS,
    KVS_DELETE_TREE,
    KVS_SET,
    TOMBSTONE_REAP,
    MessageType,
    decode,
)
from wanfedtx.fsm.errors import CommandDecodeError, FSMError, UnknownCommandError
from wanfedtx.state import StateStore
from wanfedtx.state.errors import StateError

log = Logger()

Handler = Callable[[int, Any], Any]


class FSM:
    """Applies committed commands to a :class:`StateStore`."""

    def __init__(self, state: StateStore | None = None) -> None:
        self.state = state if state is not None else StateStore()
        self.last_applied = 0
        self._handlers: dict[int, Handler] = {
            MessageType.REGISTER: self._apply_register,
            MessageType.DEREGISTER: self._apply_deregister,
            MessageType.KVS: self._apply_kvs,
            MessageType.TOMBSTONE: self._apply_tombstone,
        }

    def register_handler(self, msg_type: int, handler: Handler) -> None:
        """Let another package (federation states, ...) add its command type."""
        if msg_type in self._handlers:
            raise ValueError(f"FSM already handles message type {msg_type}")
        self._handlers[msg_type] = handler

    def apply(self, index: int, data: bytes) -> Any:
        msg_type, body = decode(data)
        handler = self._handlers.get(msg_type)
        if handler is None:
            if msg_type & IGNORE_UNKNOWN_FLAG:
                log.warn("ignoring unknown message type {type}", type=msg_type)
                self.last_applied = index
                return None
            raise UnknownCommandError(f"failed to apply request: unknown message type {msg_type}")
        try:
            result = handler(index, body)
        except StateError as exc:
            result = exc
        except (KeyError, TypeError, AttributeError) as exc:
            raise CommandDecodeError(
                f"raft command of type {msg_type} is malformed: {exc!r}"
            ) from exc
        self.last_applied = index
        return result

    # -- handlers ------------------------------------------------------------------------------

    def _apply_register(self, index: int, req: Any) -> Any:
        self.state.ensure_registration(index, req)
        return None

    def _apply_deregister(self, index: int, req: Any) -> Any:
        self.state.deregister(
            index, req["Node"], req.get("ServiceID") or "", req.get("CheckID") or ""
        )
        return None

    def _apply_kvs(self, index: int, req: Any) -> Any:
        op = req["Op"]
        ent = req["DirEnt"]
        if op == KVS_SET:
            self.state.kvs_set(index, ent)
            return True
        if op == KVS_CAS:
            return self.state.kvs_set_cas(index, ent)
        if op == KVS_DELETE:
            self.state.kvs_delete(index, ent["Key"])
            return None
        if op == KVS_DELETE_CAS:
            return self.state.kvs_delete_cas(index, ent.get("ModifyIndex", 0), ent["Key"])
        if op == KVS_DELETE_TREE:
            self.state.kvs_delete_tree(index, ent["Key"])
            return None
        return FSMError(f"Invalid KVS operation '{op}'")

    def _apply_tombstone(self, index: int, req: Any) -> Any:
        if req.get("Op") != TOMBSTONE_REAP:
            return FSMError(f"Invalid Tombstone operation '{req.get('Op')}'")
        self.state.reap_tombstones(req["ReapIndex"])
        return None

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> Iterator[bytes]:
        """The whole store as msgpack chunks, taken now (writes after this are not in it)."""
        return self.state.snapshot_chunks()

    def restore(self, chunks: Iterable[bytes], last_index: int = 0) -> None:
        self.state.restore_chunks(chunks)
        self.last_applied = last_index
