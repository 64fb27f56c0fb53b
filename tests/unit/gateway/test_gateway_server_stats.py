"""The gateway's admin stats carry Envoy's ``server.*`` gauges and per-cluster membership gauges
(``envoy_server_live``, ``envoy_server_uptime``, ``envoy_cluster_membership_healthy{...}``), on
a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from wanfedtx.gateway.admin import AdminRoot
from wanfedtx.gateway.serverstats import ServerInfo
from wanfedtx.gateway.snapshot import Snapshot, snapshot_from_json
from wanfedtx.gateway.stats import GatewayStats


def snapshot() -> Snapshot:
    return snapshot_from_json({
        "clusters": [{"name": "dc2.internal.x.consul"}, {"name": "dc3.internal.x.consul"}],
        "endpoints": [
            {"cluster_name": "dc2.internal.x.consul", "endpoints": [
                {"address": "10.0.0.1", "port": 443, "health": "HEALTHY"},
                {"address": "10.0.0.2", "port": 443, "health": "UNHEALTHY"},
                {"address": "10.0.0.3", "port": 443, "health": "UNKNOWN"}]},
            {"cluster_name": "dc3.internal.x.consul", "endpoints": [
                {"address": "10.0.1.1", "port": 443, "health": "UNHEALTHY"}]},
        ],
    })


def admin(clock: Clock, stats: GatewayStats, snap: Snapshot | None = None) -> AdminRoot:
    def get() -> Snapshot:
        if snap is None:
            raise ValueError("the gateway has no snapshot yet")
        return snap

    return AdminRoot(get, lambda: stats, ServerInfo(clock, started=100.0, memory=lambda: 4096.0))


def test_prometheus_has_envoy_server_and_membership_gauges() -> None:
    clock = Clock()
    clock.advance(100 + 3725)
    stats = GatewayStats()
    stats.listener("0.0.0.0", 8443).downstream_cx_active = 3
    stats.listener("0.0.0.0", 8444).downstream_cx_active = 2
    stats.cluster("dc2.internal.x.consul").upstream_cx_total = 12_345_678
    text = admin(clock, stats, snapshot()).stats_prometheus()
    lines = text.splitlines()
    for line in [
        "# TYPE envoy_server_live gauge", "envoy_server_live 1",
        "envoy_server_uptime 3725", "envoy_server_total_connections 5",
        "envoy_server_state 0", "envoy_server_memory_allocated 4096",
        "# TYPE envoy_cluster_membership_healthy gauge",
        'envoy_cluster_membership_healthy{envoy_cluster_name="dc2.internal.x.consul"} 2',
        'envoy_cluster_membership_total{envoy_cluster_name="dc2.internal.x.consul"} 3',
        'envoy_cluster_membership_healthy{envoy_cluster_name="dc3.internal.x.consul"} 0',
        'envoy_cluster_membership_total{envoy_cluster_name="dc3.internal.x.consul"} 1',
        'envoy_cluster_membership_degraded{envoy_cluster_name="dc3.internal.x.consul"} 0',
        # the relay's counters are still there, exact past 10^7
        'envoy_cluster_upstream_cx_total{envoy_cluster_name="dc2.internal.x.consul"} 12345678',
    ]:
        assert line in lines, line
    # one TYPE line per family
    types = [x for x in lines if x.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    clock.advance(10)
    assert "envoy_server_uptime 3735" in admin(clock, stats, snapshot()).stats_prometheus()


def test_text_stats_have_envoy_names() -> None:
    clock = Clock()
    clock.advance(160)
    lines = admin(clock, GatewayStats(), snapshot()).stats_text().splitlines()
    assert lines == sorted(lines)
    for line in ["server.live: 1", "server.uptime: 60", "server.total_connections: 0",
                 "cluster.dc2.internal.x.consul.membership_healthy: 2",
                 "cluster.dc3.internal.x.consul.membership_total: 1"]:
        assert line in lines, line


def test_without_routes_the_server_gauges_still_render() -> None:
    clock = Clock()
    clock.advance(100)
    text = admin(clock, GatewayStats()).stats_prometheus()
    assert "envoy_server_live 1" in text and "membership" not in text


def test_the_default_server_info_reads_the_process() -> None:
    info = ServerInfo()
    assert 0 <= info.uptime() < 10 * 365 * 86400
