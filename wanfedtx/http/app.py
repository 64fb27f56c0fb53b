"""The agent's HTTP API application: one Klein app with every mounted /v1 route family.

``build_app(view, state=None)`` mounts the agent routes (``/v1/agent/self``, from
``wanfedtx.http.agent``), the state-backed routes (catalog, health, KV, status, from
``wanfedtx.http.routes``) when an ``APIContext`` is given, and the reference's answers for
unknown paths (404 ``404 page not found``) and wrong methods (405 ``method X not allowed``).
New route families add a ``mount_*`` call here.
"""

from __future__ import annotations

from klein import Klein

from wanfedtx.http.agent import AgentView, mount_agent_routes
from wanfedtx.http.common import APIContext
from wanfedtx.http.routes import install_error_handlers, mount_state_routes


def build_app(view: AgentView, state: APIContext | None = None) -> Klein:
    app = Klein()
    mount_agent_routes(app, view)
    if state is not None:
        mount_state_routes(app, state)
    install_error_handlers(app)
    return app
