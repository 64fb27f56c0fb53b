# -*- test-case-name: tests.unit.http.test_http_families -*-
"""What every HTTP route family shares: its Klein app and the reference's 404/405 answers.

A route family is a class with its own ``app = family_app()`` as a class attribute (Klein's
class-based apps), routes as methods (``@app.route(...)`` over ``@endpoint``) and its context
(RPC, local state, the agent) as attrs fields on ``self``. Its routes are written with whole
paths (``/v1/kv/<path:key>``), so one family's ``app.resource()`` serves alone at a site's root
(the unit tests use it so, with ``treq.testing.StubTreq``); ``prefixes`` names the path prefixes
under which :class:`wanfedtx.http.app.API` mounts it with ``branch=True`` routes. Unknown paths
answer ``404 page not found`` and wrong methods ``405 method X not allowed`` (with ``Allow``) in
every family, as in the composed root.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, cast

from klein import Klein
from werkzeug.exceptions import MethodNotAllowed, NotFound

from wanfedtx.http.common import set_header, text_reply


class RouteFamily(Protocol):
    """One family of /v1 routes: its Klein app and the path prefixes it is mounted under."""

    app: ClassVar[Klein]
    prefixes: ClassVar[tuple[str, ...]]


def family_app() -> Klein:
    """A Klein app for one family (or the composed root), with the 404/405 handlers."""
    app = Klein()
    # KV keys may contain empty segments ("a//b"); werkzeug would otherwise answer such paths
    # with a redirect to the slash-merged key instead of routing them. Rules read this when
    # they are added, so it is set before any route.
    app.url_map.merge_slashes = False
    install_error_handlers(app)
    return app


def install_error_handlers(app: Klein) -> None:
    """The reference's answers for unknown paths and wrong methods.

    The handlers take the request and the failure as their last two arguments: a class's app
    passes its instance first, a plain app does not.
    """

    app.handle_errors(NotFound)(cast(Any, _not_found))
    app.handle_errors(MethodNotAllowed)(cast(Any, _not_allowed))


def _not_found(*args: Any) -> bytes:
    request = args[-2]
    return text_reply(request, 404, "404 page not found")


def _not_allowed(*args: Any) -> bytes:
    request, failure = args[-2], args[-1]
    exc: Any = failure.value
    allowed = sorted(m for m in (exc.valid_methods or []) if m not in ("HEAD", "OPTIONS"))
    if allowed:
        set_header(request, "Allow", ", ".join(allowed))
    method = request.method.decode("ascii", "replace")
    return text_reply(request, 405, f"method {method} not allowed")
