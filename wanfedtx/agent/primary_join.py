# -*- test-case-name: tests.unit.agent.test_agent_primary_join -*-
"""How a secondary's server finds the primary datacenter with WAN federation.

With ``connect.enable_mesh_gateway_wan_federation`` the primary never joins anyone (secondaries
join it: a star), and ``retry_join_wan`` is forbidden. A server in a secondary:

1. refreshes the gateway locator's fallback list from ``primary_gateways`` (the retry joiner's
   "mesh-gateway" variant: every ``primary_gateways_interval`` until a non-empty list is found,
   or until the locator has the primary's gateways from replicated federation states), then
2. retry-joins the primary's WAN pool at ``*.<primary>/192.0.2.2``: the ``*.<primary>`` node
   name makes the wanfed transport dial the primary's gateways with SNI
   ``server.<primary>.<domain>``; 192.0.2.2 (TEST-NET-1) is never dialed. That uses the normal
   ``retry_interval_wan`` and ``retry_max_wan``.

Log lines are the reference's, for both variants. ``primary_gateways`` entries are resolved
for every refresh by ``discover`` (``wanfedtx.agent.discover``: ``provider=mdns`` browses the
LAN, other providers are skipped, host names become every A and AAAA address); without it,
``provider=`` entries are logged as ``Cannot discover address`` and skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wanfedtx.services import Service

log = Logger(namespace="agent")

PLACEHOLDER_ADDRESS = "192.0.2.2"


def primary_join_address(primary_datacenter: str) -> str:
    """The WAN join target that the wanfed transport turns into a dial of the primary's
    gateways."""
    return f"*.{primary_datacenter}/{PLACEHOLDER_ADDRESS}"


def static_addresses(addrs: Sequence[str], variant: str, cluster: str) -> list[str]:
    """``retryJoinAddrs`` without go-discover: ``provider=`` entries are logged and skipped."""
    out = []
    for addr in addrs:
        if "provider=" in addr:
            log.error(
                "Cannot discover address: cluster={cluster} variant={variant} address={address}"
                " error={error}",
                cluster=cluster,
                variant=variant,
                address=addr,
                error="cloud auto-join (go-discover) is not supported by wanfed",
            )
            continue
        out.append(addr)
    return out


class PrimaryJoin(Service):
    """Refresh the primary's gateway addresses, then join the primary's WAN pool via them."""

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        primary_datacenter: str,
        primary_gateways: Sequence[str],
        gateways_interval: float,
        retry_interval: float,
        retry_max: int,
        refresh_fallback: Callable[[list[str]], None],
        primary_gateways_ready: Deferred[None],
        join_wan: Callable[[list[str]], Awaitable[int]],
        on_exhausted: Callable[[], object],
        discover: Callable[[list[str]], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.reactor = reactor
        self.primary_datacenter = primary_datacenter
        self.primary_gateways = list(primary_gateways)
        self.gateways_interval = gateways_interval
        self.retry_interval = retry_interval
        self.retry_max = retry_max
        self.refresh_fallback = refresh_fallback
        self.primary_gateways_ready = primary_gateways_ready
        self.join_wan = join_wan
        self.on_exhausted = on_exhausted
        self.discover = discover
        self.joined = False
        self._calls: list[Any] = []
        self._attempting: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        # Synchronously, as the reference: the fallback list is there before anything dials.
        self._refresh_gateways()

    def stopService(self) -> Deferred[None]:
        """Cancel the retry timers and a join in flight; fires once that join has settled."""
        super().stopService()
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls = []
        attempting, self._attempting = self._attempting, None
        if attempting is None or attempting.called:
            return succeed(None)
        attempting.cancel()
        return attempting

    def _later(self, delay: float, fn: Callable[[], object]) -> None:
        self._calls = [c for c in self._calls if c.active()]
        self._calls.append(self.reactor.callLater(delay, fn))

    # -- 1. the mesh-gateway variant ------------------------------------------------------

    def _refresh_gateways(self) -> None:
        if not self.running:
            return
        if not self.primary_gateways or self.primary_gateways_ready.called:
            self._join()
            return
        log.info("Refreshing mesh gateways...", cluster="primary")
        d: Deferred[None] = Deferred.fromCoroutine(self._refresh_once())
        if not d.called:
            self._attempting = d
            d.addBoth(self._settled, d)

    async def _discover(self) -> list[str]:
        if self.discover is None:
            return static_addresses(self.primary_gateways, "mesh-gateway", "primary")
        return await self.discover(self.primary_gateways)

    async def _refresh_once(self) -> None:
        try:
            addrs = await self._discover()
        except CancelledError:
            return
        if not self.running:
            return
        if self.primary_gateways_ready.called:
            self._join()
            return
        if addrs:
            self.refresh_fallback(addrs)
            log.info(
                "Discovered mesh gateways: cluster=primary mesh_gateways={mesh_gateways}",
                mesh_gateways=addrs,
            )
            log.info("Refreshing mesh gateways completed", cluster="primary")
            self._join()
            return
        log.warn(
            "Refreshing mesh gateways failed, will retry: cluster=primary"
            " retry_interval={interval}s error={error}",
            interval=self.gateways_interval,
            error="No mesh gateways found",
        )
        self._later(self.gateways_interval, self._refresh_gateways)

    # -- 2. the serf variant, to the placeholder ------------------------------------------

    def _join(self) -> None:
        target = primary_join_address(self.primary_datacenter)
        log.info("Joining cluster...", cluster="WAN")
        self._attempt([target], 1)

    def _attempt(self, addrs: list[str], attempt: int) -> None:
        if not self.running:
            return
        d: Deferred[int] = Deferred.fromCoroutine(_await(self.join_wan(addrs)))

        def joined(n: int) -> None:
            self.joined = True
            log.info(
                "Join cluster completed. Synced with initial agents: cluster=WAN num_agents={n}",
                n=n,
            )

        def failed(failure: Any) -> None:
            if failure.check(CancelledError) or not self.running:
                return  # stopped: no retry, nothing to tell
            # Consul's ``attempt > maxAttempts``: retry_max = N makes N + 1 attempts.
            if self.retry_max > 0 and attempt > self.retry_max:
                log.error(
                    "agent: max join {cluster} retry exhausted, exiting",
                    cluster="wan",
                    error=failure.getErrorMessage(),
                )
                self.on_exhausted()
                return
            log.warn(
                "Join cluster failed, will retry: cluster=WAN retry_interval={interval}s"
                " error={error}",
                interval=self.retry_interval,
                error=failure.getErrorMessage(),
            )
            self._later(self.retry_interval, lambda: self._attempt(addrs, attempt + 1))

        settled = d.addCallbacks(joined, failed)
        if not settled.called:
            self._attempting = settled
            settled.addBoth(self._settled, settled)

    def _settled(self, result: Any, d: Deferred[None]) -> Any:
        if self._attempting is d:
            self._attempting = None
        return result


async def _await(awaitable: Awaitable[int]) -> int:
    return await awaitable
