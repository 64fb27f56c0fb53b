# -*- test-case-name: tests.integration.gossip -*-
"""``SerfService``: a serf pool (LAN or WAN) as a twisted.application Service.

``startService`` binds UDP+TCP (``NetTransport``), optionally wraps the transport (the wanfed
transport wraps the WAN pool's this way, without touching the core), creates the ``Serf`` node and
starts its loops. ``stopService`` stops the loops and fires once the sockets are closed; it does not
leave the cluster (call ``leave()`` first for a graceful exit).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, succeed

from wanfedtx.reactors import ReactorLike
from wanfedtx.services import Service

from .errors import GossipError
from .interfaces import IGossipTransport
from .serf import Event, Serf, SerfConfig
from .transport import NetTransport


class SerfService(Service):
    """One serf pool bound to ``config.memberlist.bind_addr:bind_port`` (port 0 picks one)."""

    def __init__(
        self,
        config: SerfConfig,
        reactor: ReactorLike,
        on_event: Callable[[Event], None] | None = None,
        wrap_transport: Callable[[NetTransport], IGossipTransport] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.on_event = on_event
        self.wrap_transport = wrap_transport
        self.rng = rng
        self.net_transport: NetTransport | None = None
        self.serf: Serf | None = None

    def startService(self) -> None:
        ml = self.config.memberlist
        t = NetTransport(self.reactor, ml.bind_addr, ml.bind_port)
        ml.bind_port = t.listen()
        self.net_transport = t
        transport: IGossipTransport = self.wrap_transport(t) if self.wrap_transport else t
        self.serf = Serf(self.config, transport, self.reactor, self.rng, self.on_event)
        self.serf.start()
        super().startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.serf is None:
            return succeed(None)
        serf, self.serf = self.serf, None
        return serf.shutdown()

    def _running(self) -> Serf:
        if self.serf is None:
            raise GossipError("the serf service is not running; start it first")
        return self.serf

    async def join(self, addrs: Sequence[str]) -> int:
        return await self._running().join(addrs)

    async def leave(self) -> None:
        await self._running().leave()

    @property
    def port(self) -> int:
        return self.config.memberlist.bind_port
