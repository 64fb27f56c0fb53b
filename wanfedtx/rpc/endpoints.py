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
        self._wrap: Callable[[str, Endpoint], Endpoint] | None = None
        self._wrapped: dict[str, tuple[Endpoint, Endpoint]] = {}

    def register(self, service_method: str, endpoint: Endpoint) -> None:
        service, dot, method = service_method.rpartition(".")
        if not dot or not service or not method:
            raise ValueError(f"endpoint name must be Service.Method, not {service_method!r}")
        methods = self._services.setdefault(service, {})
        if method in methods:
            raise DuplicateRegistration(f"RPC endpoint {service_method} is already registered")
        methods[method] = endpoint

    def set_wrapper(self, wrap: Callable[[str, Endpoint], Endpoint]) -> None:
        """Every endpoint, registered before or after, is served as ``wrap(name, endpoint)``
        (the ACL layer's checks); the wrapped endpoint is built once per registration."""
        self._wrap = wrap
        self._wrapped.clear()

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
        if self._wrap is None:
            return endpoint
        cached = self._wrapped.get(service_method)
        if cached is None or cached[0] is not endpoint:
            cached = (endpoint, self._wrap(service_method, endpoint))
            self._wrapped[service_method] = cached
        return cached[1]

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
