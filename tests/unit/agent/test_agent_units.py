"""Agent pieces without sockets: flags mapping, LAN member tags, node-id rules, log format."""

from __future__ import annotations

import io
import json
import re
import uuid
from pathlib import Path

import attrs
import pytest
from twisted.logger import Logger, LogPublisher

from wanfedtx.agent.errors import AgentError
from wanfedtx.agent.flags import FlagError, flags_to_config, parse_bool
from wanfedtx.agent.member import lan_tags, local_member
from wanfedtx.agent.nodeid import NODE_ID_FILE, resolve_node_id
from wanfedtx.cli.agent import banner
from wanfedtx.cli.main import build_parser
from wanfedtx.config import LoadOptions, RuntimeConfig, load
from wanfedtx.logs import make_observer


def _rt(**flags: object) -> RuntimeConfig:
    return load(LoadOptions(dev=True, flags=dict(flags), hostname=lambda: "h")).runtime


def test_cli_flags_map_to_config_keys() -> None:
    args = build_parser().parse_args(
        [
            "agent",
            "-dev",
            "-datacenter=dc2",
            "-node",
            "n1",
            "-server=false",
            "-primary-gateway",
            "gw1:4431",
            "-primary-gateway=gw2:4431",
            "-http-port",
            "-1",
            "-retry-join",
            "a",
            "-node-meta",
            "rack:r1",
            "-config-file",
            "a.hcl",
            "-config-dir",
            "d",
            "-config-file",
            "b.hcl",
            "-bootstrap-expect",
            "3",
        ]
    )
    from wanfedtx.cli.agent import options_from_args

    opts = options_from_args(args)
    assert opts.dev is True
    assert opts.config_files == ("a.hcl", "d", "b.hcl")
    assert opts.flags == {
        "datacenter": "dc2",
        "node_name": "n1",
        "server": False,
        "primary_gateways": ["gw1:4431", "gw2:4431"],
        "ports": {"http": -1},
        "retry_join": ["a"],
        "node_meta": {"rack": "r1"},
        "bootstrap_expect": 3,
    }


def test_flag_value_errors() -> None:
    assert parse_bool("true") and not parse_bool("0")
    with pytest.raises(FlagError):
        parse_bool("maybe")
    with pytest.raises(FlagError, match="not of the form key:value"):
        flags_to_config({"node-meta": ["nocolon"]})


def test_server_and_client_tags() -> None:
    rt = attrs.evolve(_rt(bootstrap=True, ca_file="/ca.pem"), node_id="id-1")
    tags = lan_tags(rt)
    assert tags["role"] == "consul" and tags["port"] == "8300" and tags["wan_join_port"] == "8302"
    assert tags["bootstrap"] == "1" and tags["use_tls"] == "1" and tags["ft_fs"] == "1"
    assert tags["id"] == "id-1" and re.fullmatch(r"\d+\.\d+\.\d+.*:wanfedtx", tags["build"])
    client = attrs.evolve(_rt(server=False), node_id="id-2")
    assert lan_tags(client)["role"] == "node" and "port" not in lan_tags(client)
    m = local_member(rt)
    assert (m["Name"], m["Addr"], m["Port"], m["Status"]) == ("h", "127.0.0.1", 8301, 1)


def test_node_id_rules(tmp_path: Path) -> None:
    rt = _rt()
    fixed = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert resolve_node_id(rt, lambda: fixed) == str(fixed)
    with_dir = attrs.evolve(rt, data_dir=str(tmp_path / "d"))
    assert resolve_node_id(with_dir, lambda: fixed) == str(fixed)
    assert (tmp_path / "d" / NODE_ID_FILE).read_text() == str(fixed)
    assert resolve_node_id(with_dir) == str(fixed)  # read back, not regenerated
    (tmp_path / "d" / NODE_ID_FILE).write_text("garbage")
    with pytest.raises(AgentError, match="is not a valid UUID; fix or remove the file"):
        resolve_node_id(with_dir)


def test_banner_lists_what_is_served() -> None:
    rt = attrs.evolve(_rt(), node_id="nid")

    class FakeAgent:
        config = rt

        def http_urls(self) -> list[str]:
            return ["http://127.0.0.1:8500"]

    lines = banner(None, FakeAgent())  # type: ignore[arg-type]
    assert lines[0] == "==> Starting Consul agent..."
    assert "          HTTP API: http://127.0.0.1:8500/v1/agent/self" in lines
    assert "       Client Addr: [127.0.0.1] (HTTP: 8500)" in lines
    assert "==> Log data will now stream in as it occurs:" in lines


def test_log_lines_look_like_consuls() -> None:
    out = io.StringIO()
    log = Logger(namespace="agent", observer=LogPublisher(make_observer("debug", out=out)))
    log.info("Started HTTP server: address={address} network=tcp", address="127.0.0.1:8500")
    log.info("==> Starting Consul agent...", ui=True)
    log.debug("hidden?")
    first, second, third = out.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[INFO\]  agent: Started HTTP server: "
        r"address=127\.0\.0\.1:8500 network=tcp",
        first,
    )
    assert second == "==> Starting Consul agent..."
    assert "[DEBUG] agent: hidden?" in third

    out = io.StringIO()
    log = Logger(
        namespace="agent", observer=LogPublisher(make_observer("warn", json=True, out=out))
    )
    log.info("no")
    log.warn("yes {n}", n=1)
    (rec,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert rec["@level"] == "warn" and rec["@message"] == "yes 1" and rec["@module"] == "agent"
    assert rec["n"] == 1 and rec["@timestamp"].endswith("Z")
