"""Mounts the state-backed /v1 routes (catalog, health, KV, status) on a Klein app, plus the
reference's answers for unknown paths (404 "404 page not found") and wrong methods (405).

``mount_server_routes`` mounts them with the agent-service routes over an ``IServerState`` (the
agent's catalog: its datacenter, local RPC table and local services/checks).
"""

from __future__ import annotations

from typing import Any, Protocol

from klein import Klein
from twisted.python.failure import Failure
from werkzeug.exceptions import MethodNotAllowed, NotFound

from wanfedtx.http import agent_services, catalog, health, kv, status
from wanfedtx.http.common import RPC, APIContext, set_header, text_reply
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.state import LocalState


class IServerState(Protocol):
    """What the state-backed routes need from a server agent's catalog."""

    @property
    def datacenter(self) -> str: ...

    @property
    def rpc(self) -> RPC: ...

    @property
    def local(self) -> LocalState: ...

    @property
    def runners(self) -> CheckRunners: ...


def mount_state_routes(app: Klein, ctx: APIContext) -> None:
    # KV keys may contain empty segments ("a//b", "/"); werkzeug would otherwise answer such
    # paths with a redirect to the slash-merged key instead of routing them.
    app.url_map.merge_slashes = False
    for module in (catalog, health, kv, status):
        module.mount(app, ctx)


def mount_server_routes(app: Klein, server: IServerState) -> None:
    """Catalog, health, KV, status and the agent's service/check routes of one server."""
    mount_state_routes(app, APIContext(server.datacenter, server.rpc))
    agent_services.mount(
        app, agent_services.AgentServicesContext(server.local, server.runners, server.datacenter)
    )


def install_error_handlers(app: Klein) -> None:
    @app.handle_errors(NotFound)
    def not_found(request: Any, failure: Failure) -> bytes:
        return text_reply(request, 404, "404 page not found")

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(request: Any, failure: Failure) -> bytes:
        exc: Any = failure.value
        allowed = sorted(m for m in (exc.valid_methods or []) if m not in ("HEAD", "OPTIONS"))
        if allowed:
            set_header(request, "Allow", ", ".join(allowed))
        method = request.method.decode("ascii", "replace")
        return text_reply(request, 405, f"method {method} not allowed")
