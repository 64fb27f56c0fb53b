# -*- test-case-name: tests.unit.testing,tests.unit.rpc.test_rpc_hold_and_deadlines -*-
"""Fake consensus for tests: a leader, a follower and a leader that is not ready yet.

All three are :class:`wanfedtx.fsm.consensus.LocalConsensus` (apply at once to the FSM, no raft)
with a different answer to "who leads":

- :class:`LeaderConsensus`: the single-server leader (``LocalConsensus`` itself).
- :class:`FollowerConsensus`: never the leader, so endpoints forward every write and default read.
- :class:`NotReadyLeaderConsensus`: leads, but its leadership observers hear "leading" only when
  the test calls :meth:`~NotReadyLeaderConsensus.noop_applied` (a new leader before its first
  entry is applied, as Consul's ``consistentRead`` waits for).
"""

from __future__ import annotations

from collections.abc import Callable

from wanfedtx.fsm.consensus import LocalConsensus

LeaderConsensus = LocalConsensus


class FollowerConsensus(LocalConsensus):
    """A follower: never the leader, so every write is forwarded."""

    def is_leader(self) -> bool:
        return False


class NotReadyLeaderConsensus(LocalConsensus):
    """Leads, but its observers hear "leading" only when the test says the no-op is applied."""

    def add_leadership_observer(self, observer: Callable[[bool], None]) -> None:
        self._observers.append(observer)

    def noop_applied(self) -> None:
        """The new leader's first entry is applied: tell every observer it leads."""
        for observer in list(self._observers):
            observer(True)
