# -*- test-case-name: tests.unit.gateway.test_gateway_envoy -*-
"""Render a routing snapshot as an Envoy v3 bootstrap (static listeners and clusters) in JSON.

Users who run Envoy get exactly the routing this gateway does: one listener per snapshot listener
with the ``tls_inspector`` listener filter and the filter chains in order (``tcp_proxy``, and
``sni_cluster`` + ``tcp_proxy`` for the catch-all), and one cluster per snapshot cluster with its
endpoints inline (the reference serves them over EDS; a static file has no xDS server).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from wanfedtx.gateway.snapshot import Cluster, FilterChain, Snapshot

TLS_INSPECTOR = (
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
)
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
SNI_CLUSTER = "type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster"


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def _chain(fc: FilterChain) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if fc.sni_cluster:
        filters.append(
            {"name": "envoy.filters.network.sni_cluster", "typed_config": {"@type": SNI_CLUSTER}}
        )
    filters.append(
        {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": TCP_PROXY,
                "cluster": fc.cluster,
                "stat_prefix": fc.stat_prefix,
            },
        }
    )
    out: dict[str, Any] = {"filters": filters}
    if fc.server_names:
        out["filter_chain_match"] = {"server_names": list(fc.server_names)}
    return out


def _cluster(c: Cluster, snapshot: Snapshot) -> dict[str, Any]:
    eps = snapshot.endpoints_of(c.name) or ()
    lb = []
    for e in eps:
        item: dict[str, Any] = {
            "endpoint": {"address": _socket_address(e.address, e.port)},
            "health_status": e.health,
        }
        if e.weight is not None:
            item["load_balancing_weight"] = e.weight
        lb.append(item)
    all_ip = all(_is_ip(e.address) for e in eps)
    return {
        "name": c.name,
        "type": "STATIC" if all_ip else "STRICT_DNS",
        "connect_timeout": f"{c.connect_timeout_ms / 1000:g}s",
        "outlier_detection": {},
        "load_assignment": {
            "cluster_name": c.name,
            "endpoints": [{"lb_endpoints": lb}] if lb else [],
        },
    }


def envoy_bootstrap(snapshot: Snapshot, admin: tuple[str, int] | None = None) -> dict[str, Any]:
    """A ``envoy.config.bootstrap.v3.Bootstrap`` as JSON data."""
    listeners = [
        {
            "name": li.name,
            "address": _socket_address(li.address, li.port),
            "listener_filters": [
                {
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {"@type": TLS_INSPECTOR},
                }
            ],
            "filter_chains": [_chain(fc) for fc in li.filter_chains],
        }
        for li in snapshot.listeners
    ]
    boot: dict[str, Any] = {
        "static_resources": {
            "listeners": listeners,
            "clusters": [_cluster(c, snapshot) for c in snapshot.clusters],
        }
    }
    if admin is not None:
        boot["admin"] = {"address": _socket_address(admin[0], admin[1])}
    return boot
