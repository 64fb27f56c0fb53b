"""Three datacenters: every one reaches every other, secondaries each other through two hops.

As the reference's ``TestAgent_JoinWAN_viaMeshGateway``: both secondaries know only the primary's
gateway; once their federation states have replicated, ``secondary -> tertiary`` goes through the
secondary's gateway and the tertiary's (neither ever dials the other's server), and every WAN
pool has all three servers.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from wanfedtx.cli.demo import Federation, _get

pytestmark = pytest.mark.integration


def test_three_datacenters_reach_each_other(tmp_path: Path) -> None:
    ips = {"primary": "127.0.1.1", "secondary": "127.0.2.1", "tertiary": "127.0.3.1"}
    fed = Federation(tmp_path, ips)
    try:
        fed.start(lambda _: None)
        assert fed.wait(150), "checks failed; logs in " + str(tmp_path)
        for dc in ips:
            for other in ips:
                code, nodes = _get(f"http://{ips[dc]}:8500/v1/catalog/nodes?dc={other}")
                assert code == 200, (dc, other, nodes)
                assert [n["Datacenter"] for n in nodes] == [other]
            code, states = _get(f"http://{ips[dc]}:8500/v1/internal/federation-states")
            assert code == 200 and [s["Datacenter"] for s in states] == sorted(ips)
        # secondary -> tertiary went through the secondary's own gateway (the first of two
        # hops): that gateway counted connections on the tertiary's server cluster.
        with urllib.request.urlopen(f"{fed.admin['secondary']}/stats", timeout=5) as r:
            stats = r.read().decode()
        line = next(
            x
            for x in stats.splitlines()
            if x.startswith("cluster.server.tertiary.consul.upstream_cx_total:")
        )
        assert int(line.split(":")[1]) >= 1, line
    finally:
        fed.stop()
