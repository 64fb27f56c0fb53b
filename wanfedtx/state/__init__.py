# -*- test-case-name: tests.unit.state.test_state_blocking_timers -*-
"""In-memory state store: tables with indexes, watch sets for blocking queries, snapshot/restore.

The store is driven by the FSM (``wanfedtx.fsm``): every write carries the raft index that
produced it. Reads return ``(index, value)`` and accept a :class:`WatchSet` that blocking
queries wait on (see :mod:`wanfedtx.state.blocking`).
"""

from wanfedtx.state.store import StateStore
from wanfedtx.state.watch import WatchSet

__all__ = ["StateStore", "WatchSet"]
