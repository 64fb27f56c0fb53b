"""`wanfed gateway -envoy-config`: the JSON parses into Envoy v3 protos and passes PGV rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_gateway_snapshot import TRUST, federation_states_inputs, wanfed_inputs

from wanfedtx.cli.main import main
from wanfedtx.gateway.envoy import envoy_bootstrap
from wanfedtx.gateway.snapshot import build_snapshot

json_format = pytest.importorskip("google.protobuf.json_format", reason="test extra not installed")
bootstrap_pb2 = pytest.importorskip("envoy.config.bootstrap.v3.bootstrap_pb2")
validator = pytest.importorskip("protoc_gen_validate.validator")
# the typed_config types must be registered for Any to parse
pytest.importorskip("envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2")
pytest.importorskip("envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2")
pytest.importorskip("envoy.extensions.filters.network.sni_cluster.v3.sni_cluster_pb2")


def to_proto(data: dict[str, Any]) -> Any:
    msg = bootstrap_pb2.Bootstrap()
    json_format.ParseDict(data, msg)  # raises on any unknown field or bad value
    return msg


def validate_all(msg: Any) -> None:
    validator.validate(msg)
    for li in msg.static_resources.listeners:
        validator.validate(li)
    for c in msg.static_resources.clusters:
        validator.validate(c)


@pytest.mark.parametrize("inputs", [federation_states_inputs(), wanfed_inputs(True)])
def test_export_is_valid_envoy_v3(inputs: Any) -> None:
    snap = build_snapshot(inputs)
    msg = to_proto(envoy_bootstrap(snap, ("127.0.0.1", 19000)))
    validate_all(msg)
    li = msg.static_resources.listeners[0]
    assert li.name == snap.listeners[0].name
    assert li.listener_filters[0].name == "envoy.filters.listener.tls_inspector"
    assert [list(fc.filter_chain_match.server_names) for fc in li.filter_chains] == [
        list(fc.server_names) for fc in snap.listeners[0].filter_chains
    ]
    last = li.filter_chains[-1]
    assert [f.name for f in last.filters] == [
        "envoy.filters.network.sni_cluster",
        "envoy.filters.network.tcp_proxy",
    ]
    assert [c.name for c in msg.static_resources.clusters] == snap.cluster_names()
    assert all(c.connect_timeout.ToMilliseconds() == 5000 for c in msg.static_resources.clusters)


def test_invalid_export_would_be_caught() -> None:
    """The validation can fail: an empty stat_prefix breaks a PGV rule of TcpProxy."""
    data = envoy_bootstrap(build_snapshot(federation_states_inputs()))
    data["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "stat_prefix"
    ] = ""
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    tp = tcp_proxy_pb2.TcpProxy()
    json_format.ParseDict(
        {
            k: v
            for k, v in data["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
                "typed_config"
            ].items()
            if k != "@type"
        },
        tp,
    )
    with pytest.raises(validator.ValidationFailed):
        validator.validate(tp)


def test_cli_writes_envoy_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = tmp_path / "routes.hcl"
    routes.write_text(
        f'''
inputs {{
  datacenter = "dc1"
  trust_domain = "{TRUST}"
  wan_federation = true
  servers = [{{ node = "s1", address = "10.0.0.1" }}]
  gateways = {{
    dc1 = []
    dc2 = [{{ address = "198.18.1.1", port = 443 }}]
  }}
}}
'''
    )
    assert (
        main(
            [
                "gateway",
                "-address",
                "1.2.3.4:8443",
                "-admin-bind",
                "127.0.0.1:19000",
                "-routes",
                str(routes),
                "-envoy-config",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    msg = to_proto(data)
    validate_all(msg)
    li = msg.static_resources.listeners[0]
    assert li.name == "default:1.2.3.4:8443"
    assert [list(fc.filter_chain_match.server_names) for fc in li.filter_chains] == [
        [f"*.dc2.internal.{TRUST}"],
        ["*.server.dc2.consul"],
        ["s1.server.dc1.consul"],
        [],
    ]
    assert msg.admin.address.socket_address.port_value == 19000


def test_cli_reports_a_bad_routes_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text('{"inputs": {"datacenter": "dc1"}}')
    assert (
        main(["gateway", "-address", "127.0.0.1:1", "-routes", str(routes), "-envoy-config"]) == 1
    )
    err = capsys.readouterr().err
    assert "routes.json" in err and "trust_domain" in err


@pytest.mark.parametrize(
    ("name", "port", "message"),
    [
        # a JSON routes file: NaN, Infinity and numbers Go cannot hold are not JSON it takes
        ("routes.json", "Infinity", "invalid JSON value Infinity"),
        ("routes.json", "1e309", "number 1e309 is out of range"),
        ("routes.json", "123456789012345678901234567890", "out of range"),
        # HCL: pyhcl reads 1e400 as an infinite float; int() of it once escaped as a traceback
        ("routes.hcl", "1e400", "inf is not a whole number"),
        # not whole numbers: int() took 1 for both (Envoy refuses them)
        ("routes.json", "1.5", "1.5 is not a whole number"),
        ("routes.json", "true", "True is not a whole number"),
    ],
)
def test_cli_reports_a_routes_file_port_it_cannot_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, port: str, message: str
) -> None:
    routes = tmp_path / name
    if name.endswith(".json"):
        endpoint = '{"address": "127.0.0.1", "port": ' + port + "}"
        routes.write_text(
            '{"clusters": [{"name": "c", "endpoints": [' + endpoint + "]}],"
            ' "filter_chains": [{"sni_cluster": true, "stat_prefix": "x"}]}'
        )
    else:
        routes.write_text(
            'clusters = [{name = "c", endpoints = [{address = "127.0.0.1", port = ' + port
            + "}]}]\n"
            'filter_chains = [{sni_cluster = true, stat_prefix = "x"}]\n'
        )
    assert (
        main(["gateway", "-address", "127.0.0.1:1", "-routes", str(routes), "-envoy-config"]) == 1
    )
    err = capsys.readouterr().err
    assert name in err and message in err and "Traceback" not in err
