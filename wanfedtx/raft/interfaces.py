# -*- test-case-name: tests.unit.raft.test_raft_service -*-
"""Seams of the consensus package: ``IConsensus`` (what the FSM and endpoints use), the FSM it
drives (``IRaftFSM``) and the message transport (``IRaftTransport``).

``IConsensus`` matches ``wanfedtx.fsm.consensus.Consensus`` (the part endpoints use) and adds
leadership observers: ``add_leadership_observer(cb)`` calls ``cb(True)`` once this server leads and
its FSM has applied everything of earlier terms (start leader routines), and ``cb(False)`` when it
stops leading (stop them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

from twisted.internet.defer import Deferred

from wanfedtx.raft.messages import Message


@runtime_checkable
class IConsensus(Protocol):
    def apply(self, command: bytes) -> Deferred[tuple[int, Any]]:
        """Replicate ``command``; fires with (raft index, FSM result) once applied here.

        Fails with ``NotLeaderError`` on a follower and ``LeadershipLostError`` when leadership is
        lost before the command commits (its outcome is then unknown)."""

    def is_leader(self) -> bool: ...

    def verify_leader(self) -> Deferred[None]:
        """Fires once a quorum confirmed this server still leads and the FSM has applied every
        entry committed before the call (a linearizable read may follow)."""

    def last_contact(self) -> float:
        """Seconds since the leader was last heard from (0 on the leader)."""

    def leader_address(self) -> str:
        """The leader's address ("host:port"), "" when unknown."""

    def peers(self) -> list[str]:
        """Addresses of the voters in the latest configuration."""

    def add_leadership_observer(self, observer: Callable[[bool], None]) -> None: ...

    def remove_leadership_observer(self, observer: Callable[[bool], None]) -> None: ...


class IRaftFSM(Protocol):
    """The state machine raft drives (``wanfedtx.fsm.machine.FSM`` fits)."""

    def apply(self, index: int, data: bytes) -> Any: ...

    def snapshot(self) -> Iterator[bytes]: ...

    def restore(self, chunks: Iterable[bytes], last_index: int = 0) -> None: ...


class IRaftTransport(Protocol):
    """Delivers raft messages between servers named by their address. Lossy is fine; raft
    retries. Messages to one peer are delivered in order while a connection lasts."""

    def send(self, peer: str, message: Message) -> None: ...

    def set_receiver(self, receiver: Callable[[Message], None]) -> None: ...

    def stop(self) -> Deferred[None]: ...
