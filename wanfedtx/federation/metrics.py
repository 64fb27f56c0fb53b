# -*- test-case-name: tests.unit.federation.test_federation_metrics -*-
"""Federation metrics: how fresh each datacenter's federation state is, and how replication of
the federation states into a secondary is doing.

* ``consul_federation_state_age{datacenter="dc2"}``: seconds since the ``UpdatedAt`` of each
  federation state this server stores (on the primary, the authoritative copies; on a
  secondary, the replicated ones), read at scrape time. A datacenter whose leader stopped
  sending anti-entropy updates, or a secondary that stopped replicating, shows a growing age.
* Consul's replication gauges, set by the secondary leader's replication routine:
  ``consul_leader_replication_federation_state_status`` (1 after a successful round, 0 after a
  failed one) and ``consul_leader_replication_federation_state_index`` (the primary's index
  replicated through).
* Replication lag: ``consul_federation_state_replication_index_lag`` (after each fetch, how far
  the primary's index is ahead of what this secondary had replicated; 0 once the round is
  applied) and ``consul_federation_state_replication_lag_seconds`` (0 while rounds succeed;
  else seconds since the first failed round after the last good one, or since replication
  started when no round has succeeded yet).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from wanfedtx.federation.structs import FederationState, is_zero_time
from wanfedtx.metrics import Registry

AGE = "federation_state.age"
STATUS = "leader.replication.federation-state.status"
INDEX = "leader.replication.federation-state.index"
INDEX_LAG = "federation_state.replication.index_lag"
LAG_SECONDS = "federation_state.replication.lag_seconds"


def updated_at_seconds(text: str) -> float | None:
    """POSIX seconds of an RFC 3339 ``UpdatedAt``; None for Go's zero time or a bad value."""
    if is_zero_time(text):
        return None
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def state_ages(states: list[FederationState], now: float) -> dict[tuple[str, ...], float]:
    """``{(datacenter,): seconds since UpdatedAt}`` (states with no time are left out)."""
    out: dict[tuple[str, ...], float] = {}
    for state in states:
        when = updated_at_seconds(state.updated_at)
        if when is not None:
            out[(state.datacenter,)] = max(0.0, now - when)
    return out


def register_state_age(
    registry: Registry, list_states: Callable[[], list[FederationState]], clock: Any
) -> None:
    """``consul_federation_state_age`` per datacenter, read from ``list_states()`` at scrape
    time with ``clock`` (an ``IReactorTime``)."""
    registry.gauge_vec_func(
        AGE,
        "Seconds since each datacenter's federation state was last updated (UpdatedAt)",
        ("datacenter",),
        lambda: state_ages(list_states(), clock.seconds()),
    )


class ReplicationMetrics:
    """The gauges of one secondary's federation-state replication routine."""

    def __init__(self, registry: Registry, clock: Any) -> None:
        self.clock = clock
        self.status = registry.gauge(STATUS, "1 if the last federation-state replication round "
                                             "succeeded, 0 if it failed")
        self.index = registry.gauge(INDEX, "The primary's federation-state index replicated "
                                           "through")
        self.index_lag = registry.gauge(INDEX_LAG, "How far the primary's federation-state index "
                                                   "is ahead of what this secondary replicated")
        #: since when replication has not been current (None while it is)
        self.failing_since: float | None = clock.seconds()
        registry.gauge_func(LAG_SECONDS, "Seconds federation-state replication has been "
                                         "failing (0 while it succeeds)", self.lag_seconds)

    def fetched(self, remote_index: int, replicated_through: int) -> None:
        """The primary answered with ``remote_index``; this server had ``replicated_through``."""
        self.index_lag.set(max(0, remote_index - replicated_through))

    def succeeded(self, remote_index: int) -> None:
        self.failing_since = None
        self.status.set(1)
        self.index.set(remote_index)
        self.index_lag.set(0)

    def failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = self.clock.seconds()
        self.status.set(0)

    def lag_seconds(self) -> float:
        if self.failing_since is None:
            return 0.0
        return max(0.0, float(self.clock.seconds()) - self.failing_since)
