# -*- test-case-name: tests.unit.gateway -*-
"""The routing snapshot of a mesh gateway and the pure function that builds it.

:func:`build_snapshot` turns :class:`SnapshotInputs` (local DC, domain, trust domain, local Consul
servers, gateways per DC, local services, bind addresses, whether WAN federation is on) into a
:class:`Snapshot`: clusters, load assignments (endpoints) and one listener per bind address whose
filter chains are in the reference's order. The relay routes with it, the admin API dumps it, and
:mod:`wanfedtx.gateway.envoy` renders it as Envoy v3 JSON. Snapshots are immutable values, so a
new one can replace the old one atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from wanfedtx.gateway.errors import SnapshotInputError

DEFAULT_CONNECT_TIMEOUT_MS: Final = 5000
HEALTHY: Final = "HEALTHY"
UNHEALTHY: Final = "UNHEALTHY"
UNKNOWN: Final = "UNKNOWN"
DRAINING: Final = "DRAINING"
HEALTH_STATUSES: Final = (UNKNOWN, HEALTHY, UNHEALTHY, DRAINING)
WAN_FED_META_KEY: Final = "consul-wan-federation"
DEFAULT_NAMESPACE: Final = "default"


# ---------------------------------------------------------------------------------------------
# Inputs


@attrs.frozen
class ServerInput:
    """A local Consul server: node name and its LAN address with the ``consul`` service port."""

    node: str
    address: str
    port: int = 8300


# Envoy's largest load-assignment weight: gateway weights above it are capped.
MAX_WEIGHT = 128

@attrs.frozen
class EndpointInput:
    """A gateway or service instance, with the address the gateway must dial (WAN for remote).

    The one mesh-gateway endpoint value: the gateway's agent watch builds the snapshot's
    endpoints with :meth:`from_check_service_node`, and the servers' gateway locator
    (:mod:`wanfedtx.federation.gateway_locator`) picks its dial addresses from the same.
    """

    address: str
    port: int
    health: str = HEALTHY
    weight: int = 1

    @classmethod
    def from_check_service_node(cls, csn: Mapping[str, Any], wan: bool) -> EndpointInput:
        """A ``CheckServiceNode`` (wire shape) as an endpoint.

        The address is the reference's ``CheckServiceNode.BestAddress``: WAN = the service's
        ``wan`` tagged address (with its port when non-zero), else the service address, else the
        node's ``wan`` tagged address, else the node address; LAN = the service address, else the
        node address. The weight is the service's ``Weights.Warning`` with a warning check, else
        ``Weights.Passing`` (1 when unset), capped at 128 as Envoy's load assignments; a
        critical check or a weight of 0 makes the endpoint UNHEALTHY.
        """
        node: Mapping[str, Any] = csn.get("Node") or {}
        svc: Mapping[str, Any] = csn.get("Service") or {}
        port = int(svc.get("Port") or 0)
        address = str(svc.get("Address") or "")
        if wan:
            tagged = (svc.get("TaggedAddresses") or {}).get("wan")
            if isinstance(tagged, Mapping) and tagged.get("Address"):
                address, port = str(tagged["Address"]), int(tagged.get("Port") or port)
            elif not address:
                address = str((node.get("TaggedAddresses") or {}).get("wan") or "")
        if not address:
            address = str(node.get("Address") or "")
        statuses = {c.get("Status") for c in csn.get("Checks") or ()}
        weights = svc.get("Weights") or {}
        weight = weights.get("Warning", 1) if "warning" in statuses else weights.get("Passing", 1)
        weight = 1 if weight is None else int(weight)
        if "critical" in statuses or weight < 1:
            return cls(address, port, UNHEALTHY, 1)
        return cls(address, port, HEALTHY, min(weight, MAX_WEIGHT))


@attrs.frozen
class BindInput:
    """A bind address of the gateway: ``default``, a tagged address (``lan``, ``wan``) or custom."""

    name: str
    address: str
    port: int


@attrs.frozen
class SnapshotInputs:
    """Everything :func:`build_snapshot` reads; the relay's routing is a function of this alone."""

    datacenter: str
    trust_domain: str
    binds: tuple[BindInput, ...]
    domain: str = "consul"
    wan_federation: bool = False
    servers: tuple[ServerInput, ...] = ()
    gateways: Mapping[str, tuple[EndpointInput, ...]] = attrs.field(factory=dict)
    """Mesh gateways per datacenter (GatewayGroups and FedStateGateways merged). The keys are the
    reference's ``Datacenters()``; the local DC may appear (federation states list it)."""
    services: Mapping[str, tuple[EndpointInput, ...]] = attrs.field(factory=dict)
    """Local connect services behind this gateway (service name -> instances)."""
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS


# ---------------------------------------------------------------------------------------------
# Output


@attrs.frozen
class Endpoint:
    address: str
    port: int
    health: str = HEALTHY
    weight: int | None = 1
    """None means "not set" (Envoy then uses 1); server endpoints carry no weight."""


@attrs.frozen
class Cluster:
    name: str
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS


@attrs.frozen
class LoadAssignment:
    cluster_name: str
    endpoints: tuple[Endpoint, ...]


@attrs.frozen
class FilterChain:
    server_names: tuple[str, ...]
    """Empty for the catch-all; ``*.x`` entries match one or more labels before ``.x``."""
    cluster: str
    """The tcp_proxy cluster; empty when ``sni_cluster`` decides it."""
    stat_prefix: str
    sni_cluster: bool = False


@attrs.frozen
class Listener:
    name: str
    address: str
    port: int
    filter_chains: tuple[FilterChain, ...]


@attrs.frozen
class Snapshot:
    clusters: tuple[Cluster, ...]
    load_assignments: tuple[LoadAssignment, ...]
    listeners: tuple[Listener, ...]

    def cluster_names(self) -> list[str]:
        return [c.name for c in self.clusters]

    def endpoints_of(self, cluster: str) -> tuple[Endpoint, ...] | None:
        """Endpoints of a cluster that exists, or None (a CLA without a cluster is ignored)."""
        if cluster not in self.cluster_names():
            return None
        for la in self.load_assignments:
            if la.cluster_name == cluster:
                return la.endpoints
        return ()

    def to_json(self) -> dict[str, Any]:
        """The snapshot as plain JSON data (``/config_dump``, golden files)."""
        return {
            "clusters": [
                {"name": c.name, "connect_timeout_ms": c.connect_timeout_ms} for c in self.clusters
            ],
            "endpoints": [
                {
                    "cluster_name": la.cluster_name,
                    "endpoints": [_endpoint_json(e) for e in la.endpoints],
                }
                for la in self.load_assignments
            ],
            "listeners": [
                {
                    "name": li.name,
                    "address": li.address,
                    "port": li.port,
                    "filter_chains": [_chain_json(fc) for fc in li.filter_chains],
                }
                for li in self.listeners
            ],
        }


def _endpoint_json(e: Endpoint) -> dict[str, Any]:
    d: dict[str, Any] = {"address": e.address, "port": e.port, "health": e.health}
    if e.weight is not None:
        d["weight"] = e.weight
    return d


def _chain_json(fc: FilterChain) -> dict[str, Any]:
    d: dict[str, Any] = {
        "server_names": list(fc.server_names),
        "cluster": fc.cluster,
        "stat_prefix": fc.stat_prefix,
    }
    if fc.sni_cluster:
        d["sni_cluster"] = True
    return d


def _whole(value: Any) -> int:
    """An integer field of a routes file or snapshot (a port, a weight, a timeout): an integer,
    or a float or string that is a whole number; ``ValueError`` otherwise (Envoy refuses a port
    of 1.5 or ``true`` where ``int()`` would take 1)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def snapshot_from_json(data: Mapping[str, Any]) -> Snapshot:
    """Inverse of :meth:`Snapshot.to_json` (also the explicit form of a routes file)."""
    try:
        clusters = tuple(
            Cluster(str(c["name"]), _whole(c.get("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT_MS)))
            for c in data.get("clusters", ())
        )
        las = tuple(
            LoadAssignment(
                str(la["cluster_name"]),
                tuple(
                    Endpoint(
                        str(e["address"]),
                        _whole(e["port"]),
                        str(e.get("health", HEALTHY)).upper(),
                        None if e.get("weight") is None else _whole(e["weight"]),
                    )
                    for e in la.get("endpoints", ())
                ),
            )
            for la in data.get("endpoints", ())
        )
        listeners = tuple(
            Listener(
                str(li["name"]),
                str(li["address"]),
                _whole(li["port"]),
                tuple(
                    FilterChain(
                        tuple(str(s).lower() for s in fc.get("server_names", ())),
                        str(fc.get("cluster", "")),
                        str(fc["stat_prefix"]),
                        bool(fc.get("sni_cluster", False)),
                    )
                    for fc in li.get("filter_chains", ())
                ),
            )
            for li in data.get("listeners", ())
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SnapshotInputError(f"invalid snapshot data: {e!r}; see docs/gateway.md") from None
    snap = Snapshot(clusters, las, listeners)
    validate_snapshot(snap)
    return snap


def validate_snapshot(snap: Snapshot) -> None:
    """Reject what Envoy would reject: duplicate clusters or matches, bad names, bad health."""
    names = snap.cluster_names()
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SnapshotInputError(f"duplicate cluster names: {sorted(dup)}")
    for la in snap.load_assignments:
        for e in la.endpoints:
            if e.health not in HEALTH_STATUSES:
                raise SnapshotInputError(
                    f"endpoint {e.address}:{e.port} of {la.cluster_name} has health {e.health!r};"
                    f" use one of {', '.join(HEALTH_STATUSES)}"
                )
            if not 0 < e.port < 65536:
                raise SnapshotInputError(f"endpoint port {e.port} out of range")
            if e.weight is not None and e.weight < 1:
                raise SnapshotInputError(f"endpoint weight {e.weight} must be >= 1")
    for li in snap.listeners:
        seen: set[str] = set()
        catch_alls = 0
        for fc in li.filter_chains:
            if not fc.server_names:
                catch_alls += 1
            for sn in fc.server_names:
                if "*" in sn and (not sn.startswith("*.") or "*" in sn[1:] or len(sn) < 3):
                    raise SnapshotInputError(
                        f"server name {sn!r}: a wildcard must be the whole left-most label (*.x)"
                    )
                if sn in seen:
                    raise SnapshotInputError(
                        f"listener {li.name}: server name {sn!r} is matched by two filter chains"
                    )
                seen.add(sn)
        if catch_alls > 1:
            raise SnapshotInputError(f"listener {li.name}: more than one catch-all filter chain")


# ---------------------------------------------------------------------------------------------
# Names (connect.DatacenterSNI, ServiceSNI, TLSConfigurator.ServerSNI)


def datacenter_sni(dc: str, trust_domain: str) -> str:
    return f"{dc}.internal.{trust_domain}"


def service_sni(
    service: str, dc: str, trust_domain: str, namespace: str = DEFAULT_NAMESPACE
) -> str:
    return f"{service}.{namespace}.{dc}.internal.{trust_domain}"


def server_sni(dc: str, node: str, domain: str) -> str:
    """``<node>.server.<dc>.<domain>``, or ``server.<dc>.<domain>`` for "" or "*"."""
    domain = domain.rstrip(".")
    if node in ("", "*"):
        return f"server.{dc}.{domain}"
    return f"{node}.server.{dc}.{domain}"


# ---------------------------------------------------------------------------------------------
# The builder


def _endpoints(items: Iterable[EndpointInput]) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(e.address, e.port, e.health, e.weight) for e in items)


def build_snapshot(inp: SnapshotInputs) -> Snapshot:
    """Clusters, endpoints and listeners of a mesh gateway, exactly in the reference's order.

    Datacenters are iterated in sorted order (the reference uses Go map order, i.e. unspecified).
    """
    if not inp.datacenter or not inp.trust_domain:
        raise SnapshotInputError("datacenter and trust_domain must be set to build a snapshot")
    local = inp.datacenter
    domain = inp.domain.rstrip(".")
    trust = inp.trust_domain
    datacenters = sorted(inp.gateways)
    remote = [dc for dc in datacenters if dc != local]
    timeout = inp.connect_timeout_ms
    wanfed = inp.wan_federation

    clusters: list[Cluster] = [Cluster(datacenter_sni(dc, trust), timeout) for dc in remote]
    if wanfed:
        clusters += [Cluster(server_sni(dc, "", domain), timeout) for dc in datacenters]
        clusters += [Cluster(server_sni(local, s.node, domain), timeout) for s in inp.servers]
    clusters += [Cluster(service_sni(svc, local, trust), timeout) for svc in sorted(inp.services)]

    las: list[LoadAssignment] = []
    for dc in remote:
        eps = _endpoints(inp.gateways[dc])
        las.append(LoadAssignment(datacenter_sni(dc, trust), eps))
        if wanfed:
            las.append(LoadAssignment(server_sni(dc, "", domain), eps))
    if wanfed:
        server_eps = []
        for s in inp.servers:
            ep = Endpoint(s.address, s.port, UNKNOWN, None)
            server_eps.append(ep)
            las.append(LoadAssignment(server_sni(local, s.node, domain), (ep,)))
        las.append(LoadAssignment(server_sni(local, "", domain), tuple(server_eps)))
    for svc in sorted(inp.services):
        las.append(LoadAssignment(service_sni(svc, local, trust), _endpoints(inp.services[svc])))

    listeners = tuple(
        Listener(f"{b.name}:{b.address}:{b.port}", b.address, b.port, _chains(inp, b.name, remote))
        for b in inp.binds
    )
    snap = Snapshot(tuple(clusters), tuple(las), listeners)
    validate_snapshot(snap)
    return snap


def _chains(inp: SnapshotInputs, name: str, remote: list[str]) -> tuple[FilterChain, ...]:
    local = inp.datacenter
    domain = inp.domain.rstrip(".")
    trust = inp.trust_domain
    chains = [
        FilterChain(
            (f"*.{datacenter_sni(dc, trust)}",),
            datacenter_sni(dc, trust),
            f"mesh_gateway_remote_{name}_{dc}_tcp",
        )
        for dc in remote
    ]
    if inp.wan_federation:
        chains += [
            FilterChain(
                (f"*.{server_sni(dc, '', domain)}",),
                server_sni(dc, "", domain),
                f"mesh_gateway_remote_{name}_{dc}_tcp",
            )
            for dc in remote
        ]
        chains += [
            FilterChain(
                (server_sni(local, s.node, domain),),
                server_sni(local, s.node, domain),
                f"mesh_gateway_local_server_{name}_{local}_tcp",
            )
            for s in inp.servers
        ]
    chains.append(FilterChain((), "", f"mesh_gateway_local_{name}_tcp", sni_cluster=True))
    return tuple(chains)


def inputs_from_json(data: Mapping[str, Any]) -> SnapshotInputs:
    """Snapshot inputs from a routes file's ``inputs`` object (see docs/gateway.md)."""

    def eps(items: Any) -> tuple[EndpointInput, ...]:
        return tuple(
            EndpointInput(
                str(e["address"]),
                _whole(e["port"]),
                str(e.get("health", HEALTHY)).upper(),
                _whole(e.get("weight", 1)),
            )
            for e in (items or ())
        )

    try:
        binds = tuple(
            BindInput(str(b["name"]), str(b["address"]), _whole(b["port"]))
            for b in data.get("binds", ())
        )
        return SnapshotInputs(
            datacenter=str(data["datacenter"]),
            trust_domain=str(data["trust_domain"]),
            binds=binds,
            domain=str(data.get("domain", "consul")),
            wan_federation=bool(data.get("wan_federation", False)),
            servers=tuple(
                ServerInput(str(s["node"]), str(s["address"]), _whole(s.get("port", 8300)))
                for s in data.get("servers", ())
            ),
            gateways={str(dc): eps(v) for dc, v in (data.get("gateways") or {}).items()},
            services={str(n): eps(v) for n, v in (data.get("services") or {}).items()},
            connect_timeout_ms=_whole(data.get("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT_MS)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SnapshotInputError(
            f"invalid snapshot inputs: missing or bad field {e!s}; see docs/gateway.md"
        ) from None
