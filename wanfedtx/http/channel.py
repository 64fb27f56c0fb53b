# -*- test-case-name: tests.unit.http.test_http_limits_channel,tests.security -*-
"""The HTTP/1.1 channel of the agent's API: body caps before the body is read, a header deadline.

:class:`APIChannel` is Twisted's ``HTTPChannel`` with two bounds an unauthenticated client cannot
get around (the numbers are the Site's :class:`~wanfedtx.http.limits.HTTPLimits`):

* **Body cap per route.** Once the headers are in, the route (method + path) gives the cap. A
  ``Content-Length`` over it is answered at once; a chunked body is counted as it arrives and
  answered the moment it passes the cap. Nothing over the cap is ever buffered: the answer is a
  413 with one line (Consul's text), the write side is closed, and what the client still sends
  is read and dropped for at most :data:`LINGER` seconds (so that the client reads the 413
  rather than a reset), then the connection is aborted.
* **Header deadline** (``limits.http_read_header_timeout``). From accept, and on keep-alive from
  the first byte of the next request, until all its headers are in. Bytes trickled in do not
  move it (slowloris). It does not cover the body, a request being served (parked blocking
  queries wait up to ``max_query_time``) or an idle keep-alive connection, which Twisted's idle
  timeout (``Site.timeout``) closes as before.

Refusals are logged through :class:`~wanfedtx.ratelog.RateLimitedLog` with the peer and counted
(``http.request.refused``, label ``reason``); so is Twisted's idle-timeout line (not counted).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.web.http import HTTPFactory, _GenericHTTPChannelProtocol

from wanfedtx import webbase
from wanfedtx.hostport import address_text
from wanfedtx.http.limits import BodyCap, HTTPLimits
from wanfedtx.ratelog import RateLimitedLog

LINGER = 2.0
"""Seconds a refused request's remaining body is drained before the connection is aborted."""

_REASONS = {413: b"Request Entity Too Large"}


class APIChannel(webbase.HTTPChannel):
    """``HTTPChannel`` with route body caps and a header-read deadline (see the module)."""

    _header_timer: IDelayedCall | None = None
    _linger: IDelayedCall | None = None
    _awaiting_headers = True
    _cap: BodyCap | None = None
    _body_seen = 0
    refused = False

    # -- wiring ----------------------------------------------------------------------------

    @property
    def limits(self) -> HTTPLimits:
        """The site's limits, looked up once per connection."""
        limits = self.__dict__.get("_limits")
        if limits is None:
            limits = getattr(getattr(self, "site", None), "http_limits", None)
            if not isinstance(limits, HTTPLimits):
                limits = HTTPLimits()
            self.__dict__["_limits"] = limits
        return limits

    def _peer(self) -> str:
        return address_text(self.transport.getPeer()) if self.transport is not None else "?"

    def _report(self, reason: str, format: str, **fields: Any) -> None:
        report = getattr(getattr(self, "site", None), "report_refusal", None)
        if callable(report):
            report(reason, format, peer=self._peer(), **fields)

    def timeoutConnection(self) -> None:
        """Twisted's idle timeout, its per-connection INFO line rate-limited (with the peer)."""
        ratelog = getattr(getattr(self, "site", None), "ratelog", None)
        if isinstance(ratelog, RateLimitedLog):
            ratelog.info("idle-timeout", "Timing out idle HTTP client: from={peer}",
                         peer=self._peer())
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(
                self.abortTimeout, self.forceAbortClient
            )
        self.loseConnection()

    # -- header deadline -------------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_header_deadline()

    def _start_header_deadline(self) -> None:
        timeout = self.limits.read_header_timeout
        if timeout > 0 and self._header_timer is None:
            self._header_timer = self.callLater(
                timeout, self._header_deadline
            )

    def _stop_header_deadline(self) -> None:
        timer, self._header_timer = self._header_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def carry_header_deadline(self, left: float | None) -> None:
        """A connection handed over by the KV fast path (:mod:`wanfedtx.http.fastkv`): the
        buffered request's header deadline goes on with ``left`` seconds (None: it restarts
        with the next byte), not from the hand-over."""
        self._stop_header_deadline()
        if left is not None and self.limits.read_header_timeout > 0:
            self._header_timer = self.callLater(max(left, 0.0), self._header_deadline)

    def detach(self) -> None:
        """The KV fast path takes the connection back between requests: stop the deadlines."""
        self._stop_header_deadline()
        self._awaiting_headers = True

    def _header_deadline(self) -> None:
        self._header_timer = None
        self._report(
            "header-timeout",
            "HTTP request headers not received in time: from={peer} "
            "cause=header read deadline ({timeout}s) passed",
            timeout=f"{self.limits.read_header_timeout:g}",
        )
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return  # draining a refused body until LINGER ends
        if self._awaiting_headers and data:
            self._start_header_deadline()
        super().dataReceived(data)

    def requestDone(self, request: Any) -> None:
        # The next request's deadline starts with its first byte (possibly already buffered).
        self._awaiting_headers = True
        self._cap = None
        if self._dataBuffer and any(self._dataBuffer):
            self._start_header_deadline()
        super().requestDone(request)

    # -- body caps -------------------------------------------------------------------------

    def allHeadersReceived(self) -> None:
        self._stop_header_deadline()
        self._awaiting_headers = False
        cap = self.limits.body_cap(self._command, self._path)
        length: int | None = self.length
        if length is not None and length > cap.limit:
            self._refuse(cap, length)
            return
        self._cap, self._body_seen = cap, 0
        super().allHeadersReceived()

    def body_chunk(self, size: int) -> bool:
        """Count ``size`` more body bytes; False (and the request refused) past the cap."""
        if self.refused:
            return False
        cap = self._cap
        if cap is None:
            return True
        self._body_seen += size
        if self._body_seen > cap.limit:
            self._refuse(cap, None if self.length is None else self._body_seen)
            return False
        return True

    def rawDataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        if not self.refused:
            super().allContentReceived()

    def _refuse(self, cap: BodyCap, size: int | None) -> None:
        """413 with one line, close the write side, drain for LINGER seconds, then abort."""
        self.refused = True
        method = self._command.decode("ascii", "replace")
        path = self._path.partition(b"?")[0].decode("ascii", "replace")
        self._report(
            "body-too-large",
            "HTTP request body too large: from={peer} method={method} path={path} "
            "cause={cause}",
            method=method,
            path=path[:200],
            cause=f"body over {cap.limit} bytes ({cap.key})",
        )
        body = cap.too_large(size).encode()
        head = (
            b"HTTP/1.1 413 " + _REASONS[413] + b"\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Connection: close\r\n\r\n"
        )
        transport: Any = self.transport
        if transport is None:
            return
        transport.write(head + body)
        self.setTimeout(None)
        close_write = getattr(transport, "loseWriteConnection", None)
        if callable(close_write):
            close_write()
            self._linger = self.callLater(
                LINGER, transport.abortConnection
            )
        else:
            transport.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        """Twisted's answer to an unparsable request line or header, with a one-line body."""
        body = b"Malformed HTTP request"
        transport: Any = self.transport
        transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        self.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self._stop_header_deadline()
        linger, self._linger = self._linger, None
        if linger is not None and linger.active():
            linger.cancel()
        super().connectionLost(reason)


def content_file() -> BytesIO:
    """A request's body buffer: memory (bodies are capped before they are read), never a file."""
    return BytesIO()


def api_channel_factory(factory: HTTPFactory) -> _GenericHTTPChannelProtocol:
    """``Site.protocol`` for :class:`APIChannel` (as Twisted's generic factory builds its own)."""
    return _GenericHTTPChannelProtocol(APIChannel())  # type: ignore[no-untyped-call]
