"""Requests parked on a blocking query, answered without a Deferred chain per request.

A blocking read (``?index=N``) may wait minutes, and thousands may wait on one key. While one
waits, Klein's per-request Deferreds and closures, and the handler's own callbacks, would stay
alive with it. Instead, a read whose answer is not ready hands Klein a :class:`ParkedResponse`:
a leaf resource whose ``render`` returns ``NOT_DONE_YET``, so Klein's chain completes at once,
and whose callback on the endpoint's Deferred writes the response and finishes the request.

:class:`APIRequest` is the Site's request class for the HTTP API: when the client goes away it
cancels the parked query (dropping its watches and timer) without a ``notifyFinish`` Deferred.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from wanfedtx.http.common import APIContext, error_reply, set_meta

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


class APIRequest(Request):
    """A ``twisted.web`` request that cancels its parked query when the connection is lost."""

    parked: ParkedResponse | None = None

    def connectionLost(self, reason: Failure) -> None:
        parked = self.parked
        if parked is not None:
            self.parked = None
            parked.cancel()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


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
            body = _render_read(reply, request, self._render)
        except Exception as exc:
            body = error_reply(request, exc)
        _respond(request, body)

    def _failed(self, failure: Failure) -> None:
        request = self._take()
        if request is None or isinstance(failure.value, CancelledError):
            return
        assert failure.value is not None
        _respond(request, error_reply(request, failure.value))

    def _take(self) -> Request | None:
        request, self._request = self._request, None
        if isinstance(request, APIRequest):
            request.parked = None
        return request


def _respond(request: Request, body: bytes) -> None:
    request.write(body)  # type: ignore[no-untyped-call]
    request.finish()  # type: ignore[no-untyped-call]
