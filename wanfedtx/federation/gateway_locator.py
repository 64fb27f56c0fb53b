# -*- test-case-name: tests.unit.federation.test_federation_gateway_locator -*-
"""Gateway locator: which mesh gateway to dial for a datacenter.

A server with WAN federation on keeps two sorted lists from the replicated federation states:
the primary datacenter's usable gateways (WAN addresses) and its own datacenter's (LAN
addresses). ``pick_gateway(primary)`` picks from the first, falling back to the addresses found
from ``primary_gateways`` before anything has replicated; any other datacenter is reached through
a local gateway (there is no fallback: no local gateway, no path). A gateway is usable when its
service has the ``consul-wan-federation = "1"`` meta and none of its checks is critical.

:class:`GatewayLocator` is the long-running part: a blocking query on the local store's
federation-states list (no RPC), re-run whenever that list changes, under the same
:class:`~wanfedtx.federation.loop.RetryLoop` as anti-entropy (the reference's
``retryLoopBackoff``: one loop per 5 s, burst 5, exponential backoff on errors, 2 s doubling,
capped at 256 s). It implements the ``IGatewayResolver`` seam:
``pick_gateway(dc) -> "host:port" | ""``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wanfedtx.federation.loop import LOOP_BURST, LOOP_RATE, MAX_RETRY_BACKOFF, RetryLoop
from wanfedtx.federation.structs import FederationState
from wanfedtx.gateway.snapshot import EndpointInput
from wanfedtx.hostport import join_host_port
from wanfedtx.state.blocking import BlockingQuery, TimerSource
from wanfedtx.state.watch import WatchSet

log = Logger(namespace="gateway_locator")

WANFED_META = "consul-wan-federation"
LOCATOR_ROUTINE = "gateway locator"

FederationStatesQuery = Callable[[WatchSet | None], tuple[int, list[FederationState]]]


class LocalStateNotInitialized(Exception):
    """``local state not initialized``: no leader contact yet; not logged, just retried."""

    def __init__(self) -> None:
        super().__init__("local state not initialized")




def best_address(csn: Mapping[str, Any], wan: bool) -> str:
    """``CheckServiceNode.BestAddress`` as ``host:port`` (see
    :meth:`~wanfedtx.gateway.snapshot.EndpointInput.from_check_service_node`)."""
    ep = EndpointInput.from_check_service_node(csn, wan)
    return join_host_port(ep.address, ep.port)


def usable(csn: Mapping[str, Any]) -> bool:
    """The gateway has the wanfed meta and no critical check (warning counts as OK)."""
    meta = (csn.get("Service") or {}).get("Meta") or {}
    if meta.get(WANFED_META) != "1":
        return False
    return all(c.get("Status") != "critical" for c in csn.get("Checks") or ())


def addresses(gateways: Iterable[Mapping[str, Any]], wan: bool) -> list[str]:
    return sorted(best_address(g, wan) for g in gateways if usable(g))


class GatewayLocator(RetryLoop):
    """Tracks the primary's and this datacenter's mesh gateways; picks one to dial."""

    def __init__(
        self,
        clock: TimerSource,
        rng: random.Random,
        datacenter: str,
        primary_datacenter: str,
        federation_states: FederationStatesQuery,
        local_state_ready: Callable[[], bool],
    ) -> None:
        loop_clock: Any = clock  # a TimerSource: the reactor or task.Clock
        super().__init__(LOCATOR_ROUTINE, loop_clock, self._run_once, self._log_error,
                         LOOP_RATE, LOOP_BURST, MAX_RETRY_BACKOFF)
        self.rng = rng
        self.datacenter = datacenter
        self.primary_datacenter = primary_datacenter
        self._query = federation_states
        self._ready = local_state_ready
        self.primary_gateways: list[str] = []
        self.local_gateways: list[str] = []
        self._fallback: list[str] = []
        self.primary_gateways_ready: Deferred[None] = Deferred()

    # -- the resolver ----------------------------------------------------------------------

    def pick_gateway(self, dc: str) -> str:
        """A ``host:port`` to dial for ``dc``, or "" when there is none."""
        if dc == self.primary_datacenter:
            choices = self.primary_gateways or self._fallback
        else:
            choices = self.local_gateways
        if not choices:
            return ""
        pick = choices[0] if len(choices) == 1 else choices[self.rng.randrange(len(choices))]
        log.debug(
            "picking gateway for transit: gateway={gateway} source_datacenter={source}"
            " dest_datacenter={dest}",
            gateway=pick,
            source=self.datacenter,
            dest=dc,
        )
        return pick

    def refresh_primary_gateway_fallback_addresses(self, addrs: Iterable[str]) -> None:
        new = sorted(addrs)
        if new != self._fallback:
            self._fallback = new
            log.info(
                "updated fallback list of primary mesh gateways: mesh_gateways={mesh_gateways}",
                mesh_gateways=new,
            )

    def primary_gateway_fallback_addresses(self) -> list[str]:
        return list(self._fallback)

    # -- tracking the federation states ------------------------------------------------------

    def update_from_state(self, states: Iterable[FederationState]) -> None:
        primary: list[str] = []
        local: list[str] = []
        for state in states:
            dc, gateways = state.datacenter, state.mesh_gateways
            if dc == self.datacenter:
                local = addresses(gateways, wan=False)
            if dc == self.primary_datacenter:
                primary = addresses(gateways, wan=True)
        if primary != self.primary_gateways or local != self.local_gateways:
            self.primary_gateways, self.local_gateways = primary, local
            log.info(
                "new cached locations of mesh gateways: primary={primary} local={local}",
                primary=primary,
                local=local,
            )
        if primary and not self.primary_gateways_ready.called:
            self.primary_gateways_ready.callback(None)

    def _run_once(self, index: int) -> Deferred[int]:
        """One loop: the blocking query from ``index``; the index it answered at."""
        if not self._ready():
            raise LocalStateNotInitialized()
        d = BlockingQuery(self.clock, self.rng, index, None, self._query)
        return d.addCallback(self._update)

    def _update(self, result: tuple[int, list[FederationState]]) -> int:
        index, states = result
        self.update_from_state(states)
        return index

    @staticmethod
    def _log_error(exc: BaseException) -> None:
        if not isinstance(exc, LocalStateNotInitialized):
            log.error("error tracking primary and local mesh gateways: {error}", error=str(exc))
