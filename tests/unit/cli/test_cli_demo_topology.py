"""``wanfed demo -servers N -clients M``: the production layout's addresses, config files and
flag checks (no process is started)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from wanfedtx.cli import demo
from wanfedtx.cli.demo_topology import Layout, write_configs
from wanfedtx.cli.main import UsageError

IPS = {"primary": "127.0.1.1", "secondary": "127.0.2.1"}


def test_each_agent_has_its_own_loopback_address() -> None:
    lay = Layout(IPS, servers=3, clients=2)
    assert lay.gateways == 2
    assert [lay.server_ip("primary", i) for i in (1, 2, 3)] == [
        "127.0.1.1", "127.0.1.2", "127.0.1.3"
    ]
    assert [lay.client_ip("secondary", k) for k in (1, 2)] == ["127.0.2.11", "127.0.2.12"]
    assert lay.gateway_command("primary", 2) == [
        "gateway", "-gateway=mesh", "-register", "-expose-servers",
        "-address", "127.0.1.12:4431", "-wan-address", "127.0.1.12:4431",
        "-http-addr", "127.0.1.12:8500", "-admin-bind", "127.0.1.12:19000",
    ]
    assert Layout(IPS, servers=1, clients=1).gateways == 1


def test_configs_servers_bootstrap_and_only_secondaries_know_primary_gateways(
    tmp_path: Path,
) -> None:
    files = write_configs(tmp_path, Layout(IPS, servers=3, clients=2))
    assert [p.parent.name for p in files["secondary"]] == [
        "sec1", "sec2", "sec3", "sec-client1", "sec-client2"
    ]
    pri1 = files["primary"][0].read_text()
    assert "bootstrap_expect = 3" in pri1 and "server = true" in pri1
    assert "primary_gateways" not in pri1
    sec2 = files["secondary"][1].read_text()
    assert 'primary_gateways = ["127.0.1.11:4431", "127.0.1.12:4431"]' in sec2
    assert 'bind_addr = "127.0.2.2"' in sec2
    client = files["primary"][3].read_text()
    assert "server = false" in client and "verify_incoming" not in client
    assert 'retry_join = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]' in client


@pytest.mark.parametrize(
    ("servers", "clients", "text"),
    [(3, 1, "-clients must be at least 2"), (0, 0, "-servers must be 1 to 9")],
)
def test_flag_checks(servers: int, clients: int, text: str, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    demo.configure(parser)
    args = parser.parse_args(
        ["-servers", str(servers), "-clients", str(clients), "-dir", str(tmp_path)]
    )
    with pytest.raises(UsageError, match=text):
        demo.run(args)
