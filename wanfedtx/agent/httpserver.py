# -*- test-case-name: tests.integration.agent.test_agent_http,tests.security -*-
"""A service that serves one ``IResource`` on a list of TCP addresses and closes cleanly.

``HTTPServerService`` is the draining endpoint service of :mod:`wanfedtx.listening` with a
Site: ``startService`` listens on every ``(host, port)`` (``somaxconn`` backlog) and logs
``Started HTTP server``; ``stopService`` stops listening, closes the open connections and
returns a Deferred that fires when every socket is closed.

The Site enforces the HTTP bounds (:class:`~wanfedtx.http.limits.HTTPLimits`): at most
``limits.http_max_conns_per_client`` open connections per client IP (one more is closed at
accept, without a response, as Consul), and, through :class:`~wanfedtx.http.channel.APIChannel`,
the route body caps and the header-read deadline. Plain KV reads, writes and deletes are
served by the KV fast path (:mod:`wanfedtx.http.fastkv`, ``fast_kv=False`` turns it off),
within the same bounds. Refusals are logged rate-limited with the peer
(``wanfedtx.ratelog``) and counted in ``http.request.refused`` (label ``reason``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.web.resource import IResource

from wanfedtx import logs, metrics, webbase
from wanfedtx.hostport import address_text
from wanfedtx.http.common import APIContext
from wanfedtx.http.fastkv import channel_factory, kv_context
from wanfedtx.http.limits import HTTPLimits
from wanfedtx.http.parking import APIRequest
from wanfedtx.listening import DrainingEndpointService, tcp_endpoint
from wanfedtx.ratelog import RateLimitedLog

Addr = tuple[str, int]


log = Logger(namespace="agent")


class _TrackingSite(webbase.Site):
    """A Site that bounds its open connections per client IP."""

    protocol = channel_factory

    def __init__(
        self,
        resource: IResource,
        *,
        http_limits: HTTPLimits | None = None,
        registry: metrics.Registry | None = None,
        fast_kv: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(resource, **kw)
        #: the KV routes' context when the KV fast path serves them (wanfedtx.http.fastkv)
        self.fast_kv: APIContext | None = kv_context(resource) if fast_kv else None
        self.http_limits = http_limits if http_limits is not None else HTTPLimits()
        self.per_client: dict[str, int] = {}
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
            peer=address_text(peer),
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
        proto = super().buildProtocol(addr)
        if proto is None:
            return None
        self.per_client[host] = self.per_client.get(host, 0) + 1
        # A partial rather than a closure per connection (as wanfedtx.listening does).
        proto.connectionLost = partial(self._lost, host, proto.connectionLost)
        return proto

    def _lost(self, host: str, lost: Any, reason: Any) -> None:
        try:
            lost(reason)
        finally:
            left = self.per_client.get(host, 1) - 1
            if left > 0:
                self.per_client[host] = left
            else:
                self.per_client.pop(host, None)


class HTTPServerService(DrainingEndpointService):
    """Serve ``resource`` over HTTP on ``addrs`` within ``http_limits``."""

    def __init__(
        self,
        reactor: IReactorTCP,
        resource: IResource,
        addrs: tuple[Addr, ...],
        http_limits: HTTPLimits | None = None,
        *,
        fast_kv: bool = True,
    ) -> None:
        self.reactor = reactor
        self.addrs = addrs
        self.site = _TrackingSite(
            resource, requestFactory=APIRequest, http_limits=http_limits, reactor=reactor,
            fast_kv=fast_kv,
        )
        self.site.displayTracebacks = False
        self.site.noisy = False
        super().__init__(
            [tcp_endpoint(reactor, host, port) for host, port in addrs],
            self.site,
            abort=False,
            on_listening=_started,
        )

    def bound_addresses(self) -> list[Addr]:
        """Where the server actually listens (ports resolved when 0 was asked for)."""
        out: list[Addr] = []
        for p in self.ports:
            h: Any = p.getHost()
            out.append((h.host, h.port))
        return out

    def stopService(self) -> defer.Deferred[None]:
        self.site.ratelog.stop()
        return super().stopService()


def _started(port: IListeningPort) -> None:
    bound: Any = port.getHost()
    log.info("Started HTTP server: address={address} network=tcp",
             address=_fmt(bound.host, bound.port))


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
