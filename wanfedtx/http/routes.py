# -*- test-case-name: tests.unit.http.test_http_families -*-
"""The route families of a server agent's state (catalog, health, KV, status, agent services,
federation states), and the reference's answers for unknown paths (404 "404 page not found")
and wrong methods (405), re-exported from :mod:`wanfedtx.http.family`.

``server_families(server)`` builds them over an ``IServerState`` (the agent's catalog: its
datacenter, local RPC table and local services/checks); :class:`wanfedtx.http.app.API` composes
them with the agent's own families.
"""

from __future__ import annotations

from typing import Protocol

from wanfedtx.http.acl import ACLRoutes
from wanfedtx.http.agent_services import AgentServicesRoutes
from wanfedtx.http.catalog import CatalogRoutes
from wanfedtx.http.common import RPC, APIContext
from wanfedtx.http.connect_ca import ConnectCARoutes
from wanfedtx.http.family import RouteFamily, install_error_handlers
from wanfedtx.http.federation import FederationStateRoutes
from wanfedtx.http.health import HealthRoutes
from wanfedtx.http.kv import KVRoutes
from wanfedtx.http.operator import OperatorRoutes
from wanfedtx.http.status import StatusRoutes
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.state import LocalState

__all__ = ["IServerState", "install_error_handlers", "server_families", "state_families"]


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


def state_families(ctx: APIContext) -> list[RouteFamily]:
    """Catalog, health, KV and status over ``ctx``."""
    return [CatalogRoutes(ctx), HealthRoutes(ctx), KVRoutes(ctx), StatusRoutes(ctx)]


def server_families(server: IServerState, default_token: str = "") -> list[RouteFamily]:
    """Catalog, health, KV, status, the agent's service/check routes, federation states,
    the operator's raft routes, the Connect CA and the ACL API."""
    ctx = APIContext(server.datacenter, server.rpc, default_token=default_token)
    return [
        *state_families(ctx),
        AgentServicesRoutes(server.local, server.runners, server.datacenter),
        FederationStateRoutes(ctx),
        OperatorRoutes(ctx),
        ConnectCARoutes(ctx),
        ACLRoutes(ctx),
    ]
