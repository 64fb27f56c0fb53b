# -*- test-case-name: tests.unit.http,tests.integration.http -*-
"""Requests parked on a blocking query, answered without a Deferred chain per request.

A blocking read (``?index=N``) may wait minutes, and thousands may wait on one key. While one
waits, Klein's per-request Deferreds and closures, and the handler's own callbacks, would stay
alive with it. Instead, a read whose answer is not ready hands Klein a :class:`ParkedResponse`:
a leaf resource whose ``render`` returns ``NOT_DONE_YET``, so Klein's chain completes at once,
and whose callback on the endpoint's Deferred writes the response and finishes the request.

:class:`APIRequest` is the Site's request class for the HTTP API: when the client goes away it
cancels the parked query (dropping its watches and timer) without a ``notifyFinish`` Deferred.
It also counts body bytes against the route's cap (:mod:`wanfedtx.http.channel`), keeps the body
in memory (it is capped; Twisted would spill bodies over 100 KB to a temporary file), answers
a failure that escaped every handler with a logged, plain-text 500 instead of Twisted's HTML page,
and gives routing this server's address instead of a ``Host`` name werkzeug would refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from wanfedtx import webbase
from wanfedtx.hostport import address_text
from wanfedtx.http.channel import APIChannel, content_file
from wanfedtx.http.common import APIContext, error_reply, log_unexpected, set_meta, text_reply

Args = dict[str, Any]
Render = Callable[[Request, Args], bytes]
ReadReply: TypeAlias = "Deferred[bytes] | ParkedResponse"


def read(request: Request, ctx: APIContext, method: str, args: Args, render: Render) -> ReadReply:
    """Call a read endpoint, set the blocking-query headers and ``render`` its reply.

    An answer that is not ready (a blocking query waiting for a change) parks the request.
    """
    d = ctx.rpc(method, args)
    if d.called:
        return d.addCallback(_render_read, request, render)
    return ParkedResponse(request, d, render)


def _render_read(reply: Args, request: Request, render: Render) -> bytes:
    set_meta(request, reply)
    return render(request, reply)


class _SharedRender:
    """The last rendering of a shared reply, replayed for the other requests that got it.

    When a write wakes a group of identical parked reads, every member gets the same reply
    object; the first is rendered (JSON, headers) and the rest get its status, the headers the
    rendering set and its body. Renderers of parked reads must depend on the reply only.
    """

    __slots__ = ("body", "code", "headers", "render", "reply")

    def __init__(self) -> None:
        self.reply: Args | None = None
        self.render: Render | None = None
        self.code = 200
        self.headers: list[tuple[bytes, list[bytes]]] = []
        self.body = b""

    def __call__(self, reply: Args, request: Request, render: Render) -> bytes:
        headers = request.responseHeaders
        if reply is self.reply and render is self.render:
            request.setResponseCode(self.code)
            for name, values in self.headers:
                headers.setRawHeaders(name, values)
            return self.body
        before = {name: list(values) for name, values in headers.getAllRawHeaders()}
        body = _render_read(reply, request, render)
        self.reply, self.render, self.code, self.body = reply, render, request.code, body
        self.headers = [
            (name, list(values))
            for name, values in headers.getAllRawHeaders()
            if before.get(name) != list(values)
        ]
        return body


_render_shared = _SharedRender()


class APIRequest(webbase.Request):
    """A ``twisted.web`` request that cancels its parked query when the connection is lost."""

    parked: ParkedResponse | None = None

    def gotLength(self, length: int | None) -> None:
        self.content = content_file()

    def handleContentChunk(self, data: bytes) -> None:
        channel = self.channel
        if isinstance(channel, APIChannel) and not channel.body_chunk(len(data)):
            return
        content: Any = self.content
        content.write(data)

    def render(self, resrc: IResource) -> None:
        """Render ``resrc`` unless the URL is not UTF-8 (one-line 400, one rate-limited line)."""
        if not _utf8_url(self):
            report = getattr(self.site, "report_refusal", None)
            if callable(report):
                peer: Any = self.getClientAddress()
                report("bad-url", "HTTP request refused: from={peer} cause={cause}",
                       peer=address_text(peer),
                       cause="URL or Host is not valid UTF-8")
            self.write(text_reply(self, 400, "Non-UTF-8 encoding in URL."))
            self.finish()
            return
        super().render(resrc)

    def getRequestHostname(self) -> bytes:
        """The ``Host`` header's name, or this server's address when werkzeug's routing would
        refuse the name (a label over 63 bytes or empty: IDNA) and fail the request with a
        logged traceback; the name only matters for redirects (Consul serves such requests)."""
        name: bytes = super().getRequestHostname()
        try:
            name.decode("utf-8").lower().partition(":")[0].encode("idna")
        except UnicodeError:
            host: Any = self.getHost()
            return str(getattr(host, "host", "localhost")).encode("ascii", "replace")
        return name

    def processingFailed(self, reason: Failure) -> Failure:
        """A failure no handler answered: logged with the request, a one-line 500."""
        log_unexpected(self, reason)
        if not self.finished and not self._disconnected and not self.startedWriting:
            body = text_reply(self, 500, "internal error")
            self.write(body)
            self.finish()
        return reason

    def connectionLost(self, reason: Failure) -> None:
        parked = self.parked
        if parked is not None:
            self.parked = None
            parked.cancel()
        super().connectionLost(reason)


@implementer(IResource)
class ParkedResponse:
    """The answer of one parked read: rendered and written when ``query`` fires."""

    __slots__ = ("_query", "_render", "_request")
    isLeaf = True

    def __init__(self, request: Request, query: Deferred[Args], render: Render) -> None:
        self._request: Request | None = request
        self._query = query
        self._render = render
        # The parsed query string is cached on the request; a parked request need not keep
        # it (rendering parses it again if it needs it).
        request.__dict__.pop("_wanfed_query", None)
        if isinstance(request, APIRequest):
            request.parked = self
        else:
            request.notifyFinish().addErrback(lambda _: self.cancel())

    def render(self, request: Request) -> int:
        self._query.addCallbacks(self._answer, self._failed)
        return NOT_DONE_YET

    def getChildWithDefault(self, name: bytes, request: Request) -> ParkedResponse:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("a parked response has no children")

    def cancel(self) -> None:
        """The client went away: stop waiting (the query drops its watches and timer)."""
        self._request = None
        self._query.cancel()

    def _answer(self, reply: Args) -> None:
        request = self._take()
        if request is None:
            return
        try:
            body = _render_shared(reply, request, self._render)
        except Exception:
            body = error_reply(request, Failure())
        _respond(request, body)

    def _failed(self, failure: Failure) -> None:
        request = self._take()
        if request is None or isinstance(failure.value, CancelledError):
            return
        _respond(request, error_reply(request, failure))

    def _take(self) -> Request | None:
        request, self._request = self._request, None
        if isinstance(request, APIRequest):
            request.parked = None
        return request


def _utf8_url(request: Request) -> bool:
    """True if the path and the query string (after percent-decoding) and the ``Host`` header
    decode as UTF-8 (Klein decodes them and logs a traceback when they do not)."""
    path, _, qs = request.uri.partition(b"?")
    host = request.requestHeaders.getRawHeaders(b"host") or []
    try:
        unquote_to_bytes(path).decode("utf-8")
        unquote_to_bytes(qs.replace(b"+", b" ")).decode("utf-8")
        for value in host:
            value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _respond(request: Request, body: bytes) -> None:
    request.write(body)
    request.finish()
