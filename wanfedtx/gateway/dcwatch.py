# -*- test-case-name: tests.unit.gateway.test_gateway_dcwatch -*-
"""Remote datacenters' mesh gateways for a gateway's snapshot: the two sources and their merge.

A mesh gateway learns the gateways of other datacenters in two ways, as the reference's
proxycfg:

1. ``GatewayGroups``: for every datacenter the agent knows (``/v1/catalog/datacenters``,
   re-read every 30 s as the reference's ``datacenters`` watch with MaxAge 30 s) except its own,
   a blocking watch of that datacenter's mesh-gateway services
   (``/v1/internal/service-dump?kind=mesh-gateway&dc=<dc>``: ``Internal.ServiceDump`` of kind
   mesh-gateway). Every gateway runs these, with or without the ``consul-wan-federation`` meta.
   An empty answer removes the datacenter, as the reference;
2. ``FedStateGateways``: the federation states' gateways
   (``/v1/internal/federation-states/mesh-gateways``), watched only by a gateway with the meta.

Where a datacenter is known both ways, :func:`merge_gateways` uses the set whose newest
gateway service (highest ``Service.ModifyIndex``) is newer, so federation states win when they
carry a newer registration than the service dump (a gateway that came back at a new address
reaches the primary through federation states before the dump, which itself travels through
the old address, can see it); on a tie the service dump, which also carries the live health
of the checks, is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from wanfedtx.gateway.errors import SnapshotInputError
from wanfedtx.gateway.snapshot import EndpointInput

MESH_GATEWAY_KIND = "mesh-gateway"
DATACENTERS_PATH = "/v1/catalog/datacenters"
DATACENTERS_POLL = 30.0


class GatewayWatchError(SnapshotInputError):
    """An agent answer about other datacenters' gateways that cannot be used."""


def service_dump_path(dc: str) -> str:
    """The per-datacenter watch of mesh-gateway services (stale reads, as proxycfg's cache)."""
    return f"/v1/internal/service-dump?kind={MESH_GATEWAY_KIND}&dc={dc}&stale"


@attrs.frozen
class GatewayGroup:
    """One datacenter's gateways as endpoints, and the newest gateway registration's index."""

    endpoints: tuple[EndpointInput, ...]
    max_index: int = 0


def _max_index(entries: Iterable[Mapping[str, Any]]) -> int:
    best = 0
    for e in entries:
        idx = (e.get("Service") or {}).get("ModifyIndex") or 0
        if isinstance(idx, int) and not isinstance(idx, bool) and idx > best:
            best = idx
    return best


def group_of(entries: Any, local_dc: str) -> GatewayGroup:
    """CheckServiceNodes (wire/JSON shape) of one datacenter as a :class:`GatewayGroup`."""
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise GatewayWatchError("mesh gateway list: expected a JSON array of objects")
    eps = []
    for e in entries:
        node = e.get("Node") or {}
        if not isinstance(node, Mapping) or not isinstance(e.get("Service") or {}, Mapping):
            raise GatewayWatchError("mesh gateway list: Node and Service must be objects")
        try:
            eps.append(EndpointInput.from_check_service_node(
                e, wan=node.get("Datacenter", local_dc) != local_dc))
        except (TypeError, ValueError, AttributeError) as exc:
            raise GatewayWatchError(f"mesh gateway list: bad entry: {exc}") from None
    return GatewayGroup(tuple(eps), _max_index(entries))


def groups_from_federation_states(data: Any, local_dc: str) -> dict[str, GatewayGroup]:
    """``/v1/internal/federation-states/mesh-gateways`` (DC -> CheckServiceNodes)."""
    if not isinstance(data, Mapping):
        raise GatewayWatchError("federation state mesh gateways: expected a JSON object")
    return {str(dc): group_of(entries or [], local_dc) for dc, entries in data.items()}


def datacenters_from(data: Any) -> list[str]:
    """``/v1/catalog/datacenters``: a JSON array of names."""
    if not isinstance(data, list) or not all(isinstance(d, str) and d for d in data):
        raise GatewayWatchError("datacenters: expected a JSON array of names")
    return list(data)


def merge_gateways(
    groups: Mapping[str, GatewayGroup], fed_states: Mapping[str, GatewayGroup]
) -> dict[str, tuple[EndpointInput, ...]]:
    """The snapshot's gateways per datacenter (the reference's ``Datacenters()`` and
    ``GetMeshGatewayEndpoints``): the union of both sources' datacenters; where both know one,
    the federation state's set only when its newest registration is newer."""
    out: dict[str, tuple[EndpointInput, ...]] = {}
    for dc in {*groups, *fed_states}:
        group, fed = groups.get(dc), fed_states.get(dc)
        if group is None and fed is not None:
            out[dc] = fed.endpoints
        elif fed is None and group is not None:
            out[dc] = group.endpoints
        elif group is not None and fed is not None:
            out[dc] = fed.endpoints if fed.max_index > group.max_index else group.endpoints
    return out
