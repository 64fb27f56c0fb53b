"""The HTTP API application: one Klein app, endpoints registered by module, Consul-style replies.

``HTTPApi(view)`` builds the Klein app. ``view`` is the agent-side object the endpoints read
(``AgentView``: runtime config, node id, member description); later parts add their endpoints by
adding a module to ``ENDPOINT_MODULES`` with a ``register(api)`` function that calls
``api.route(path, methods)(handler)``. Handlers return a JSON-able value (sent as
``application/json``, indented when ``?pretty`` is given, as Consul does) or raise an
``HTTPError`` (sent as a one-line ``text/plain`` body). Unknown paths answer 404 with Consul's
(Go's) ``404 page not found``; a known path with another method answers 405 with
``method X not allowed``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed as WzMethodNotAllowed
from werkzeug.exceptions import NotFound as WzNotFound

from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.http.errors import HTTPError

Handler = Callable[..., Any]

ENDPOINT_MODULES: tuple[str, ...] = ("wanfedtx.http.agent_endpoints",)


log = Logger(namespace="agent.http")

class AgentView(Protocol):
    """What endpoints may read from the agent."""

    @property
    def config(self) -> RuntimeConfig: ...

    def member(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, dict[str, str]]: ...


class HTTPApi:
    """The ``/v1`` API as a Klein app around an ``AgentView``."""


    def __init__(self, view: AgentView, modules: Sequence[str] = ENDPOINT_MODULES) -> None:
        self.view = view
        self.app = Klein()
        self._install_error_handlers()
        for name in modules:
            importlib.import_module(name).register(self)

    def route(self, path: str, methods: Sequence[str] = ("GET",)) -> Callable[[Handler], Handler]:
        """Register ``handler(request, **url_args)`` for ``path`` and ``methods``."""

        def deco(handler: Handler) -> Handler:
            def wrapper(request: IRequest, **kwargs: Any) -> Any:
                try:
                    result = handler(request, **kwargs)
                except HTTPError as e:
                    return self._text(request, e.code, e.message)
                return self._json(request, result)

            wrapper.__name__ = f"{handler.__name__}_{len(list(self.app.url_map.iter_rules()))}"
            self.app.route(path, methods=list(methods), strict_slashes=False)(wrapper)
            return handler

        return deco

    def _install_error_handlers(self) -> None:
        @self.app.handle_errors(WzNotFound)
        def not_found(request: IRequest, failure: Failure) -> bytes:
            return self._text(request, 404, "404 page not found")

        @self.app.handle_errors(WzMethodNotAllowed)
        def bad_method(request: IRequest, failure: Failure) -> bytes:
            method = request.method.decode("ascii", "replace")
            return self._text(request, 405, f"method {method} not allowed")

    @staticmethod
    def _text(request: IRequest, code: int, message: str) -> bytes:
        request.setResponseCode(code)  # type: ignore[no-untyped-call]
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")  # type: ignore[no-untyped-call]
        return message.encode() + b"\n"

    @staticmethod
    def _json(request: IRequest, value: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")  # type: ignore[no-untyped-call]
        query = request.uri.split(b"?", 1)[1] if b"?" in request.uri else b""
        pretty = b"pretty" in parse_qs(query, keep_blank_values=True)
        if pretty:
            return json.dumps(value, indent=4).encode() + b"\n"
        return json.dumps(value, separators=(",", ":")).encode()

    def resource(self) -> IResource:
        resource: IResource = self.app.resource()
        return resource
