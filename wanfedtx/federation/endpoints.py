# -*- test-case-name: tests.unit.federation.test_federation_endpoints -*-
"""RPC endpoints ``FederationState.Apply``, ``.Get``, ``.List`` and ``.ListMeshGateways``.

They ride on the catalog's :class:`~wanfedtx.catalog.endpoints.Endpoints` (same state store,
consensus, forwarder, blocking-query timers and wait groups). As the reference:

* ``Apply`` sets ``Datacenter`` to the primary datacenter and forwards there, so every write
  lands in the primary; upserts without ``UpdatedAt`` get the current time; a missing state
  or datacenter and an unknown op are refused before anything is written.
* ``Get`` is routed by ``TargetDatacenter`` (the server that answers); its ``Datacenter`` names
  the state to fetch. ``List`` and ``ListMeshGateways`` are routed by ``Datacenter``.
* All three reads are blocking queries over the federation-states table.

This project has no ACL system yet (roadmap item 9), so the operator/node/service permission
checks of the reference are not made; ``Token`` is accepted and passed on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred

from wanfedtx.catalog.endpoints import Endpoints, HandlerFn, as_handler
from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.federation import structs
from wanfedtx.federation.structs import FederationState
from wanfedtx.fsm.commands import MessageType
from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.state import StateStore, WatchSet

Args = dict[str, Any]
Handler = Callable[[Args], Deferred[Any]]

APPLY = "FederationState.Apply"
GET = "FederationState.Get"
LIST = "FederationState.List"
LIST_MESH_GATEWAYS = "FederationState.ListMeshGateways"


class FederationEndpoints:
    """The ``FederationState`` RPC service of one server."""

    def __init__(
        self, endpoints: Endpoints, primary_datacenter: str, metrics: Registry = REGISTRY
    ) -> None:
        self.endpoints = endpoints
        self.metrics = metrics
        self.primary_datacenter = primary_datacenter or endpoints.datacenter

    @property
    def state(self) -> StateStore:
        return self.endpoints.state

    def handlers(self) -> dict[str, Handler]:
        table: dict[str, HandlerFn] = {
            APPLY: self.apply,
            GET: self.get,
            LIST: self.list,
            LIST_MESH_GATEWAYS: self.list_mesh_gateways,
        }

        clock = self.endpoints.clock

        def wrap(name: str, fn: HandlerFn) -> Handler:
            # federation_state.apply/get/list/list_mesh_gateways: whole call,
            # blocking wait included, as the reference's MeasureSince.
            timer = self.metrics.summary(
                "federation_state." + _snake(name.split(".", 1)[1]),
                f"Time spent in {name} (seconds)",
            )

            def checked(args: Args) -> Coroutine[Any, Any, Any] | Deferred[Any]:
                if not isinstance(args, dict):
                    raise BadRequestError("request must be an object")
                return fn(args)

            inner = as_handler(checked)

            def handler(args: Args) -> Deferred[Any]:
                start = clock.seconds()

                def measured(value: Any) -> Any:
                    timer.observe(clock.seconds() - start)
                    return value

                return inner(args).addBoth(measured)

            return handler

        return {name: wrap(name, fn) for name, fn in table.items()}

    def register_into(self, registry: Any) -> None:
        """Add the handlers to an RPC endpoint table (``wanfedtx.rpc.endpoints.Endpoints``)."""
        for name, handler in self.handlers().items():
            registry.register(name, handler)

    # -- handlers ------------------------------------------------------------------------------

    async def apply(self, args: Args) -> bool:
        """Upsert or delete a federation state in the primary; True after an upsert."""
        body = structs.decode_request(args, self.endpoints.clock.seconds())
        routed = dict(args, Datacenter=self.primary_datacenter)
        forwarded, reply = await self.endpoints._forward(APPLY, routed, write=True)
        if forwarded:
            return bool(reply)
        body["Datacenter"] = self.primary_datacenter
        result = await self.endpoints._apply(MessageType.FEDERATION_STATE, body)
        return result is True

    def get(self, args: Args) -> Deferred[Any]:
        name = args.get("Datacenter") or ""
        if not isinstance(name, str):
            raise BadRequestError("Datacenter must be a string")
        return self.endpoints._read(
            GET, args, partial(_get, self.state, name), _get_reply, route="TargetDatacenter"
        )

    def list(self, args: Args) -> Deferred[Any]:
        return self.endpoints._read(LIST, args, partial(_list, self.state), _list_reply)

    def list_mesh_gateways(self, args: Args) -> Deferred[Any]:
        return self.endpoints._read(
            LIST_MESH_GATEWAYS, args, partial(_list, self.state), _gateways_reply
        )


# Module functions and partials rather than closures: parked queries keep them alive.
def _snake(name: str) -> str:
    """``ListMeshGateways`` -> ``list_mesh_gateways``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _get(state: StateStore, name: str, ws: WatchSet | None) -> tuple[int, FederationState | None]:
    return state.federation_state_get(ws, name)


def _list(state: StateStore, ws: WatchSet | None) -> tuple[int, list[FederationState]]:
    return state.federation_state_list(ws)


def _get_reply(row: FederationState | None) -> Args:
    return {"State": None if row is None else structs.state_out(row)}


def _list_reply(rows: list[FederationState]) -> Args:
    return {"States": [structs.state_out(r) for r in rows]}


def _gateways_reply(rows: list[FederationState]) -> Args:
    return {
        "DatacenterNodes": {r.datacenter: list(r.mesh_gateways) for r in rows if r.mesh_gateways}
    }
