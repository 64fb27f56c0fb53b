# -*- test-case-name: tests.unit.test_webbase -*-
"""Twisted's web base classes with the signatures the methods wanfedtx calls really have.

``twisted.web`` is mostly not annotated. Calls to it from outside are allowed by mypy's
``untyped_calls_exclude`` (``pyproject.toml``), but calls through ``self`` or ``super()`` of a
wanfedtx subclass are not. Every wanfedtx subclass of ``HTTPChannel``, ``Request``, ``Resource`` or
``Site`` derives from the names here instead: at run time they ARE Twisted's classes (no wrapper,
no extra frame); only the type checker sees the annotated declarations below. Annotations of
requests and resources that Twisted hands in keep using Twisted's own names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.web import http as _http
from twisted.web import resource as _resource
from twisted.web import server as _server

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from twisted.internet.interfaces import IAddress, IDelayedCall
    from twisted.internet.protocol import connectionDone
    from twisted.python.failure import Failure
    from twisted.web.resource import IResource

    class HTTPChannel(_http.HTTPChannel):
        def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall: ...
        def setTimeout(self, period: float | None) -> float | None: ...
        def loseConnection(self) -> None: ...
        def connectionMade(self) -> None: ...
        def dataReceived(self, data: bytes) -> None: ...
        def allHeadersReceived(self) -> None: ...
        def allContentReceived(self) -> None: ...
        def requestDone(self, request: _http.Request) -> None: ...
        def connectionLost(self, reason: Failure = connectionDone) -> None: ...

    class Request(_server.Request):
        def getClientAddress(self) -> IAddress: ...
        def getHost(self) -> IAddress: ...
        def getRequestHostname(self) -> bytes: ...
        def write(self, data: bytes) -> None: ...
        def finish(self) -> None: ...
        def render(self, resrc: IResource) -> None: ...
        def connectionLost(self, reason: Failure) -> None: ...

    class Resource(_resource.Resource):
        def __init__(self) -> None: ...
        def getChild(self, path: bytes, request: _server.Request) -> _resource.Resource: ...

    class Site(_server.Site):
        def __init__(
            self,
            resource: IResource,
            requestFactory: Callable[..., _http.Request] | None = None,
            *args: Any,
            parsePOSTFormSubmission: bool = True,
            **kwargs: Any,
        ) -> None: ...
        def buildProtocol(
            self, addr: IAddress | None
        ) -> _http._GenericHTTPChannelProtocol | None: ...

else:
    HTTPChannel = _http.HTTPChannel
    Request = _server.Request
    Resource = _resource.Resource
    Site = _server.Site

__all__ = ["HTTPChannel", "Request", "Resource", "Site"]
