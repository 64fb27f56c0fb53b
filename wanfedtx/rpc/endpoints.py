# -*- test-case-name: tests.unit.rpc.test_rpc_codec,tests.unit.rpc.test_rpc_frame_budget -*-
"""RPC endpoints by ``Service.Method`` with net/rpc's lookup errors; ships ``Status.Ping``.

An endpoint is a callable taking the decoded arguments and returning the reply, or a Deferred
that fires with it. Raising an exception makes the call fail; its ``str()`` travels to the
caller as the error string.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wanfedtx.rpc.errors import DuplicateRegistration, RPCLayerError

Endpoint = Callable[[Any], Any]


class EndpointNotFound(RPCLayerError):
    """The requested ``Service.Method`` is not registered (net/rpc's exact wording)."""


class Endpoints:
    """The ``Service.Method`` -> callable table one RPC server dispatches through."""

    def __init__(self) -> None:
        self._services: dict[str, dict[str, Endpoint]] = {}

    def register(self, service_method: str, endpoint: Endpoint) -> None:
        service, dot, method = service_method.rpartition(".")
        if not dot or not service or not method:
            raise ValueError(f"endpoint name must be Service.Method, not {service_method!r}")
        methods = self._services.setdefault(service, {})
        if method in methods:
            raise DuplicateRegistration(f"RPC endpoint {service_method} is already registered")
        methods[method] = endpoint

    def replace(self, service_method: str, wrap: Callable[[Endpoint], Endpoint]) -> None:
        """Replace a registered endpoint by ``wrap(endpoint)`` (the ACL layer guards them)."""
        service, _, method = service_method.rpartition(".")
        methods = self._services.get(service, {})
        if method in methods:
            methods[method] = wrap(methods[method])

    def lookup(self, service_method: str) -> Endpoint:
        """The endpoint, or ``EndpointNotFound`` with net/rpc's message."""
        dot = service_method.rfind(".")
        if dot < 0:
            raise EndpointNotFound("rpc: service/method request ill-formed: " + service_method)
        methods = self._services.get(service_method[:dot])
        if methods is None:
            raise EndpointNotFound("rpc: can't find service " + service_method)
        endpoint = methods.get(service_method[dot + 1 :])
        if endpoint is None:
            raise EndpointNotFound("rpc: can't find method " + service_method)
        return endpoint

    def names(self) -> list[str]:
        return sorted(f"{s}.{m}" for s, ms in self._services.items() for m in ms)


def status_ping(args: Any) -> None:
    """``Status.Ping``: succeeds with an empty (nil) reply; used for health checks and benches."""
    return None


def default_endpoints() -> Endpoints:
    """A table holding the endpoints this package ships (``Status.Ping``)."""
    endpoints = Endpoints()
    endpoints.register("Status.Ping", status_ping)
    return endpoints
