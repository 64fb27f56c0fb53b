# -*- test-case-name: tests.unit.gateway,tests.integration.gateway -*-
"""Gateway counters with Envoy's names, rendered as Envoy's ``/stats`` text and Prometheus text.

Counters live in small per-scope objects (one per listener, tcp_proxy stat prefix and cluster) so
the relay bumps plain attributes on its hot path. Names follow Envoy: ``listener.<addr>_<port>.*``,
``tcp.<stat_prefix>.*``, ``cluster.<name>.*`` and ``tls_inspector.*``. Prometheus output uses
Envoy's conversion: ``envoy_cluster_upstream_cx_total{envoy_cluster_name="..."}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from wanfedtx.gateway.clienthello import MALFORMED, NOT_TLS, TOO_LARGE, ClientHello


class _Scope:
    FIELDS: ClassVar[tuple[str, ...]] = ()
    GAUGES: ClassVar[frozenset[str]] = frozenset()

    def items(self) -> Iterator[tuple[str, int]]:
        for f in self.FIELDS:
            yield f, getattr(self, f)


class ListenerStats(_Scope):
    FIELDS = (
        "downstream_cx_total",
        "downstream_cx_active",
        "downstream_cx_overflow",
        "downstream_pre_cx_timeout",
        "no_filter_chain_match",
    )
    GAUGES = frozenset({"downstream_cx_active"})
    __slots__ = FIELDS

    def __init__(self) -> None:
        for f in self.FIELDS:
            setattr(self, f, 0)

    downstream_cx_total: int
    downstream_cx_active: int
    downstream_cx_overflow: int
    downstream_pre_cx_timeout: int
    no_filter_chain_match: int


class InspectorStats(_Scope):
    FIELDS = (
        "tls_found",
        "tls_not_found",
        "client_hello_too_large",
        "sni_found",
        "sni_not_found",
        "alpn_found",
        "alpn_not_found",
        "read_error",
    )
    __slots__ = FIELDS

    def __init__(self) -> None:
        for f in self.FIELDS:
            setattr(self, f, 0)

    tls_found: int
    tls_not_found: int
    client_hello_too_large: int
    sni_found: int
    sni_not_found: int
    alpn_found: int
    alpn_not_found: int
    read_error: int

    def count_rejected(self, reason: str) -> None:
        """Count a connection the inspector turned away for ``reason`` (a clienthello reason)."""
        if reason == NOT_TLS:
            self.tls_not_found += 1
        elif reason == TOO_LARGE:
            self.client_hello_too_large += 1
        elif reason == MALFORMED:
            self.read_error += 1

    def count_hello(self, hello: ClientHello) -> None:
        """Count a parsed ClientHello and whether it carried SNI and ALPN."""
        self.tls_found += 1
        if hello.server_name:
            self.sni_found += 1
        else:
            self.sni_not_found += 1
        if hello.alpn:
            self.alpn_found += 1
        else:
            self.alpn_not_found += 1


class TcpStats(_Scope):
    FIELDS = (
        "downstream_cx_total",
        "downstream_cx_no_route",
        "downstream_cx_rx_bytes_total",
        "downstream_cx_tx_bytes_total",
        "idle_timeout",
        "upstream_flush_active",
    )
    GAUGES = frozenset({"upstream_flush_active"})
    __slots__ = FIELDS

    def __init__(self) -> None:
        for f in self.FIELDS:
            setattr(self, f, 0)

    downstream_cx_total: int
    downstream_cx_no_route: int
    downstream_cx_rx_bytes_total: int
    downstream_cx_tx_bytes_total: int
    idle_timeout: int
    upstream_flush_active: int


class ClusterStats(_Scope):
    FIELDS = (
        "upstream_cx_total",
        "upstream_cx_active",
        "upstream_cx_connect_fail",
        "upstream_cx_connect_timeout",
        "upstream_cx_none_healthy",
        "upstream_cx_rx_bytes_total",
        "upstream_cx_tx_bytes_total",
        "upstream_cx_destroy_remote",
        "upstream_cx_destroy_local",
    )
    GAUGES = frozenset({"upstream_cx_active"})
    __slots__ = FIELDS

    def __init__(self) -> None:
        for f in self.FIELDS:
            setattr(self, f, 0)

    upstream_cx_total: int
    upstream_cx_active: int
    upstream_cx_connect_fail: int
    upstream_cx_connect_timeout: int
    upstream_cx_none_healthy: int
    upstream_cx_rx_bytes_total: int
    upstream_cx_tx_bytes_total: int
    upstream_cx_destroy_remote: int
    upstream_cx_destroy_local: int


class GatewayStats:
    """All scopes of one gateway process; scopes are created on first use and never removed."""

    def __init__(self) -> None:
        self.inspector = InspectorStats()
        self.listeners: dict[str, ListenerStats] = {}
        self.tcp: dict[str, TcpStats] = {}
        self.clusters: dict[str, ClusterStats] = {}

    def listener(self, address: str, port: int) -> ListenerStats:
        key = f"{address}_{port}"
        s = self.listeners.get(key)
        if s is None:
            s = self.listeners[key] = ListenerStats()
        return s

    def tcp_prefix(self, prefix: str) -> TcpStats:
        s = self.tcp.get(prefix)
        if s is None:
            s = self.tcp[prefix] = TcpStats()
        return s

    def cluster(self, name: str) -> ClusterStats:
        s = self.clusters.get(name)
        if s is None:
            s = self.clusters[name] = ClusterStats()
        return s

    def _all(self) -> Iterator[tuple[str, str, str, _Scope]]:
        """(envoy scope, tag name, tag value, scope object)."""
        yield "tls_inspector", "", "", self.inspector
        for k, ls in sorted(self.listeners.items()):
            yield "listener", "envoy_listener_address", k, ls
        for k, ts in sorted(self.tcp.items()):
            yield "tcp", "envoy_tcp_prefix", k, ts
        for k, cs in sorted(self.clusters.items()):
            yield "cluster", "envoy_cluster_name", k, cs

    def value(self, name: str) -> int | None:
        """A counter by its full text name (as in ``/stats``), or None."""
        for line in self.render_text().splitlines():
            k, _, v = line.partition(": ")
            if k == name:
                return int(v)
        return None

    def render_text(self) -> str:
        """Envoy's ``/stats`` format: one ``name: value`` per line, sorted by name."""
        lines = []
        for scope, _tag, key, obj in self._all():
            base = f"{scope}.{key}." if key else f"{scope}."
            for f, v in obj.items():
                lines.append(f"{base}{f}: {v}")
        return "\n".join(sorted(lines)) + "\n"

    def render_prometheus(self) -> str:
        """Prometheus text exposition (version 0.0.4) with Envoy's metric and label names."""
        families: dict[str, tuple[str, list[str]]] = {}
        for scope, tag, key, obj in self._all():
            for f, v in obj.items():
                metric = f"envoy_{scope}_{f}"
                kind = "gauge" if f in obj.GAUGES else "counter"
                label = f'{{{tag}="{_escape(key)}"}}' if tag else ""
                families.setdefault(metric, (kind, []))[1].append(f"{metric}{label} {v}")
        out = []
        for metric in sorted(families):
            kind, samples = families[metric]
            out.append(f"# TYPE {metric} {kind}")
            out.extend(samples)
        return "\n".join(out) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def merge(parts: list[GatewayStats]) -> GatewayStats:
    """One view summing several workers' stats (each worker writes only its own)."""
    out = GatewayStats()

    def add(dst: _Scope, src: _Scope) -> None:
        for f, v in src.items():
            setattr(dst, f, getattr(dst, f) + v)

    for p in parts:
        add(out.inspector, p.inspector)
        for k, ls in list(p.listeners.items()):
            add(out.listeners.setdefault(k, ListenerStats()), ls)
        for k, ts in list(p.tcp.items()):
            add(out.tcp.setdefault(k, TcpStats()), ts)
        for k, cs in list(p.clusters.items()):
            add(out.clusters.setdefault(k, ClusterStats()), cs)
    return out
