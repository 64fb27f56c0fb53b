"""Wiring of federation states into one server: FSM type 30, RPC endpoints, HTTP routes.

:class:`FederationServer` is a ``MultiService`` child of the agent on servers. It installs the
raft type-30 handler on the catalog's FSM (before raft replays its log), adds the
``FederationState.*`` handlers to the catalog's local RPC table (``CatalogAgent.rpc``, which the
HTTP API calls) and, through :meth:`register_into`, to the :8300 endpoint table.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.application.service import MultiService

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.federation import fsm as fed_fsm
from wanfedtx.federation.endpoints import FederationEndpoints
from wanfedtx.http import federation as http_federation
from wanfedtx.http.common import APIContext


class FederationServer(MultiService):
    """Federation states on one server."""

    def __init__(self, catalog: CatalogAgent, primary_datacenter: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.catalog = catalog
        self.datacenter = catalog.datacenter
        self.primary_datacenter = primary_datacenter or catalog.datacenter
        fed_fsm.install(catalog.fsm)
        self.endpoints = FederationEndpoints(catalog.endpoints, self.primary_datacenter)
        catalog.handlers.update(self.endpoints.handlers())

    def register_into(self, registry: Any) -> None:
        """Add the ``FederationState.*`` handlers to the :8300 endpoint table."""
        self.endpoints.register_into(registry)

    def mount(self, app: Klein) -> None:
        """The internal HTTP APIs (``/v1/internal/federation-state*``) on the agent's app."""
        http_federation.mount(app, APIContext(self.datacenter, self.catalog.rpc))
