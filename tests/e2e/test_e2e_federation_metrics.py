"""Federation metrics of the two-datacenter demo (real agents and gateways on 127.0.1.1 and
127.0.2.1, Consul's default ports: not beside the other demo tests), scraped as Prometheus does:

* both servers export ``consul_federation_state_age`` for both datacenters, small and fresh;
* the secondary's leader reports federation-state replication working:
  ``consul_leader_replication_federation_state_status 1``, the primary's index in
  ``..._index``, no lag;
* each gateway exports ``envoy_server_live 1`` and a healthy member for the other datacenter's
  cluster; once the secondary's gateway is stopped (its service has a 1 s TCP check), the
  primary gateway's membership for the secondary's cluster drops to 0 healthy.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from scrape_support import families
from test_e2e_federation_status import IPS, _log_tails, _with_gateway_check

from wanfedtx.cli import demo
from wanfedtx.cli.demo import Federation, poll_until

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[str, list[tuple[str, str]]]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return families(resp.read().decode())


def agent_metrics(dc: str) -> dict[str, list[tuple[str, str]]]:
    return scrape(f"http://{IPS[dc]}:8500/v1/agent/metrics?format=prometheus")


def ages(fams: dict[str, list[tuple[str, str]]]) -> dict[str, float]:
    return {labels.split('"')[1]: float(v) for labels, v in fams["consul_federation_state_age"]}


def membership(fed: Federation, dc: str, what: str) -> dict[str, int]:
    fams = scrape(f"{fed.admin[dc]}/stats/prometheus")
    return {labels.split('"')[1]: int(v)
            for labels, v in fams[f"envoy_cluster_membership_{what}"]}


def test_federation_metrics_of_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "_write_config", _with_gateway_check(demo._write_config))
    fed = Federation(tmp_path, IPS)
    try:
        fed.start(lambda _: None)
        assert fed.wait(120), "the demo's checks did not pass:\n" + _log_tails(fed.root)
        assert all(p.poll() is None for p in fed.procs), (
            "a process of the demo exited (is another demo running?):\n" + _log_tails(fed.root))

        def replicated() -> bool:
            fams = agent_metrics("secondary")
            return (fams.get("consul_leader_replication_federation_state_status") == [("", "1")]
                    and set(ages(fams)) == {"primary", "secondary"})

        assert poll_until(replicated, 60), _log_tails(fed.root)
        sec = agent_metrics("secondary")
        assert float(sec["consul_leader_replication_federation_state_index"][0][1]) > 0
        assert sec["consul_federation_state_replication_index_lag"] == [("", "0")]
        assert sec["consul_federation_state_replication_lag_seconds"] == [("", "0")]
        pri = agent_metrics("primary")
        assert set(ages(pri)) == {"primary", "secondary"}
        assert all(0 <= age < 600 for age in [*ages(pri).values(), *ages(sec).values()])
        # the primary replicates from no one
        assert "consul_leader_replication_federation_state_status" not in pri

        for dc, other in (("primary", "secondary"), ("secondary", "primary")):
            gw = scrape(f"{fed.admin[dc]}/stats/prometheus")
            assert gw["envoy_server_live"] == [("", "1")]
            healthy = membership(fed, dc, "healthy")
            remote = [name for name in healthy if name.startswith(f"{other}.")]
            assert remote and all(healthy[n] >= 1 for n in remote), healthy

        fed.procs[3].terminate()  # the secondary's gateway
        fed.procs[3].wait(timeout=30)

        def secondary_unhealthy_at_the_primary_gateway() -> bool:
            healthy = membership(fed, "primary", "healthy")
            total = membership(fed, "primary", "total")
            remote = [n for n in healthy if n.startswith("secondary.")]
            return bool(remote) and all(healthy[n] == 0 and total[n] >= 1 for n in remote)

        assert poll_until(secondary_unhealthy_at_the_primary_gateway, 30), membership(
            fed, "primary", "healthy")
    finally:
        fed.stop()
