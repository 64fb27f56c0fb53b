# -*- test-case-name: tests.unit.fsm.test_fsm_machine,tests.unit.agent.test_agent_ae_model -*-
"""The consensus seam the endpoints talk to, and ``LocalConsensus``, the single-server mode.

``IConsensus`` lives in ``wanfedtx.raft.interfaces`` once raft lands; until then this Protocol
names the part the endpoints use. :class:`LocalConsensus` applies each command to the FSM at once
with the next index. It is NOT durable: nothing is written to disk, a restart starts empty. It is
the single-server mode used until the raft log is wired in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed

from wanfedtx.fsm.machine import FSM


class Consensus(Protocol):
    """What endpoints need from consensus (a subset of ``IConsensus``)."""

    def apply(self, command: bytes) -> Deferred[tuple[int, Any]]: ...

    def is_leader(self) -> bool: ...

    def verify_leader(self) -> Deferred[None]: ...

    def last_contact(self) -> float: ...

    def leader_address(self) -> str: ...

    def peers(self) -> list[str]: ...

    def add_leadership_observer(self, observer: Callable[[bool], None]) -> None: ...

    def remove_leadership_observer(self, observer: Callable[[bool], None]) -> None: ...


class LocalConsensus:
    """Single server, in memory: every command is committed and applied immediately."""

    def __init__(self, fsm: FSM, address: str) -> None:
        self.fsm = fsm
        self.address = address
        self.index = fsm.last_applied
        self._observers: list[Callable[[bool], None]] = []

    def apply(self, command: bytes) -> Deferred[tuple[int, Any]]:
        index = self.index + 1
        try:
            result = self.fsm.apply(index, command)
        except Exception as exc:  # the command was rejected; the index is not used
            return fail(exc)
        self.index = index
        return succeed((index, result))

    def is_leader(self) -> bool:
        return True

    def verify_leader(self) -> Deferred[None]:
        return succeed(None)

    def last_contact(self) -> float:
        return 0.0

    def leader_address(self) -> str:
        return self.address

    def peers(self) -> list[str]:
        return [self.address]

    def add_leadership_observer(self, observer: Callable[[bool], None]) -> None:
        self._observers.append(observer)
        observer(True)

    def remove_leadership_observer(self, observer: Callable[[bool], None]) -> None:
        if observer in self._observers:
            self._observers.remove(observer)
