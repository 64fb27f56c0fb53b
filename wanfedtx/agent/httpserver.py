"""A service that serves one ``IResource`` on a list of TCP addresses and closes cleanly.

``startService`` listens on every ``(host, port)``; ``stopService`` stops listening, closes the
open connections and returns a Deferred that fires when every socket is closed.

The Site enforces the HTTP bounds (:class:`~wanfedtx.http.limits.HTTPLimits`): at most
``limits.http_max_conns_per_client`` open connections per client IP (one more is closed at
accept, without a response, as Consul), and, through :class:`~wanfedtx.http.channel.APIChannel`,
the route body caps and the header-read deadline. Refusals are logged rate-limited with the peer
(``wanfedtx.ratelog``) and counted in ``http.request.refused`` (label ``reason``).
"""

from __future__ import annotations

import ipaddress
from functools import partial
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.web.resource import IResource
from twisted.web.server import Site

from wanfedtx import logs, metrics
from wanfedtx.agent import limits
from wanfedtx.http.channel import api_channel_factory
from wanfedtx.http.limits import HTTPLimits
from wanfedtx.http.parking import APIRequest
from wanfedtx.ratelog import RateLimitedLog

Addr = tuple[str, int]


log = Logger(namespace="agent")


class _TrackingSite(Site):
    """A Site that remembers its open connections and when they close, and bounds them per
    client IP."""

    protocol = api_channel_factory

    def __init__(
        self,
        resource: IResource,
        *,
        http_limits: HTTPLimits | None = None,
        registry: metrics.Registry | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(resource, **kw)  # type: ignore[no-untyped-call]
        self.http_limits = http_limits if http_limits is not None else HTTPLimits()
        self.open: set[Any] = set()
        self.per_client: dict[str, int] = {}
        self._peer_of: dict[int, str] = {}
        self._drained: list[defer.Deferred[None]] = []
        clock: IReactorTime = self.reactor
        self.ratelog = RateLimitedLog(log, clock)
        self.refused = (registry or metrics.REGISTRY).counter(
            "http.request.refused", "HTTP connections or requests refused by a bound", ("reason",)
        )

    def report_refusal(self, reason: str, format: str, **fields: Any) -> None:
        """Count a refusal and log it (rate-limited per reason)."""
        self.refused.inc(reason=reason)
        self.ratelog.warn(reason, format, **fields)

    def log(self, request: Any) -> None:
        """Access log at debug level, as Consul's ``Request finished`` lines."""
        if not logs.enabled(LogLevel.debug):
            return
        peer = request.getClientAddress()
        log.debug(
            "Request finished: method={method} url={url} from={peer} code={code}",
            method=request.method.decode("ascii", "replace"),
            url=request.uri.decode("ascii", "replace"),
            peer=f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}",
            code=request.code,
        )

    def buildProtocol(self, addr: Any) -> Any:
        host = str(getattr(addr, "host", ""))
        cap = self.http_limits.max_conns_per_client
        if cap > 0 and self.per_client.get(host, 0) >= cap:
            self.report_refusal(
                "conn-limit",
                "HTTP connection refused: from={peer} cause=client connection limit reached "
                "({limit} per client, limits.http_max_conns_per_client)",
                peer=f"{host}:{getattr(addr, 'port', '?')}",
                limit=cap,
            )
            return None  # Twisted closes the socket
        proto = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if proto is None:
            return None
        self.per_client[host] = self.per_client.get(host, 0) + 1
        self._peer_of[id(proto)] = host
        self.open.add(proto)
        # A partial rather than a closure and a Deferred per connection: thousands of
        # connections may be parked on blocking queries.
        proto.connectionLost = partial(self._lost, proto, proto.connectionLost)
        return proto

    def _lost(self, proto: Any, lost: Any, reason: Any) -> None:
        try:
            lost(reason)
        finally:
            self.open.discard(proto)
            host = self._peer_of.pop(id(proto), None)
            if host is not None:
                left = self.per_client.get(host, 1) - 1
                if left > 0:
                    self.per_client[host] = left
                else:
                    self.per_client.pop(host, None)
            if not self.open:
                drained, self._drained = self._drained, []
                for d in drained:
                    d.callback(None)

    def drained(self) -> defer.Deferred[None]:
        """Fires once no connection is open."""
        if not self.open:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._drained.append(d)
        return d


class HTTPServerService(Service):
    """Serve ``resource`` over HTTP on ``addrs`` within ``http_limits``."""

    def __init__(
        self,
        reactor: IReactorTCP,
        resource: IResource,
        addrs: tuple[Addr, ...],
        http_limits: HTTPLimits | None = None,
    ) -> None:
        self.reactor = reactor
        self.addrs = addrs
        self.site = _TrackingSite(
            resource, requestFactory=APIRequest, http_limits=http_limits, reactor=reactor
        )
        self.site.displayTracebacks = False
        self.site.noisy = False
        self.ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        for host, port in self.addrs:
            interface = host
            if ipaddress.ip_address(host).version == 6 and host == "::":
                interface = "::"
            lp = self.reactor.listenTCP(
                port,
                self.site,  # type: ignore[arg-type]
                backlog=limits.listen_backlog(),
                interface=interface,
            )
            self.ports.append(lp)
            bound: Any = lp.getHost()
            log.info(
                "Started HTTP server: address={address} network=tcp",
                address=_fmt(bound.host, bound.port),
            )

    def bound_addresses(self) -> list[Addr]:
        """Where the server actually listens (ports resolved when 0 was asked for)."""
        out: list[Addr] = []
        for p in self.ports:
            h: Any = p.getHost()
            out.append((h.host, h.port))
        return out

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        waits: list[defer.Deferred[Any]] = []
        for p in self.ports:
            d = p.stopListening()
            if isinstance(d, defer.Deferred):
                waits.append(d)
        self.ports = []
        self.site.ratelog.stop()
        waits.append(self.site.drained())
        for proto in list(self.site.open):
            # Site builds a _GenericHTTPChannelProtocol that proxies to the real channel.
            transport = getattr(proto, "transport", None) or getattr(
                getattr(proto, "_channel", None), "transport", None
            )
            if transport is not None:
                transport.loseConnection()
        dl = defer.DeferredList(waits, consumeErrors=True)
        return dl.addCallback(lambda _: None)


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
