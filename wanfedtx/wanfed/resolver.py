# -*- test-case-name: tests.unit.wanfed.test_wanfed_transport -*-
"""A minimal ``IGatewayResolver``: fixed mesh-gateway addresses per datacenter.

It stands in for the gateway locator (the gateway locator in ``wanfedtx.federation``) and really
routes: ``pick_gateway(dc)`` returns one of the gateways configured for ``dc`` (chosen at random
with an injected RNG when there are several, as the locator does) or None when there is none.
``from_primary_gateways`` builds the secondary-side case the agent can know from configuration
alone: the primary datacenter's gateways from ``primary_gateways``. Entries that need cloud
discovery (``provider=...``) are skipped with a warning: go-discover is not built.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

from twisted.logger import Logger

log = Logger(namespace="gateway_locator")

MSG_PICKING = "picking gateway for transit"


class StaticGatewayResolver:
    """``pick_gateway(dc)`` over a fixed ``{dc: ["host:port", ...]}`` table."""

    def __init__(
        self,
        gateways: Mapping[str, Sequence[str]],
        local_dc: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.gateways = {dc: sorted(addrs) for dc, addrs in gateways.items() if addrs}
        self.local_dc = local_dc
        self.rng = rng or random.Random()

    def pick_gateway(self, dc: str) -> str | None:
        addrs = self.gateways.get(dc)
        if not addrs:
            return None
        gw = addrs[0] if len(addrs) == 1 else self.rng.choice(addrs)
        log.debug(MSG_PICKING, gateway=gw, source_datacenter=self.local_dc, dest_datacenter=dc)
        return gw

    @classmethod
    def from_primary_gateways(
        cls,
        primary_dc: str,
        primary_gateways: Iterable[str],
        local_dc: str = "",
        rng: random.Random | None = None,
    ) -> StaticGatewayResolver:
        static = []
        for entry in primary_gateways:
            if "provider=" in entry:
                log.warn(
                    "skipping primary_gateways entry {entry!r}: cloud auto-join discovery "
                    "(provider=...) is not supported; list gateways as host:port",
                    entry=entry,
                )
                continue
            static.append(entry)
        return cls({primary_dc: static} if primary_dc else {}, local_dc, rng)
