"""The seven WAN-federation errors of the reference, word for word, in order, and
Consul's usual checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wanfedtx.config import ConfigError, LoadResult
from wanfedtx.config.sockaddr import IfAddr

WANFED_SERVER = """
datacenter = "two"
primary_datacenter = "one"
server = true
connect { enabled = true, enable_mesh_gateway_wan_federation = true }
"""


def _err(loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str], hcl: str) -> str:
    with pytest.raises(ConfigError) as exc:
        loadcfg(write("c.hcl", hcl))
    return str(exc.value)


SEVEN = [
    (
        "connect { enable_mesh_gateway_wan_federation = true }\nserver = true",
        "'connect.enable_mesh_gateway_wan_federation=true' requires 'connect.enabled=true'",
    ),
    (
        "connect { enabled = true, enable_mesh_gateway_wan_federation = true }",
        "'connect.enable_mesh_gateway_wan_federation = true' requires 'server = true'",
    ),
    (
        WANFED_SERVER + 'node_name = "a/b"',
        "'connect.enable_mesh_gateway_wan_federation = true' requires that 'node_name' not "
        "contain '/' characters",
    ),
    (
        WANFED_SERVER + 'start_join_wan = ["1.2.3.4"]',
        "'start_join_wan' is incompatible with 'connect.enable_mesh_gateway_wan_federation = true'",
    ),
    (
        WANFED_SERVER + 'retry_join_wan = ["1.2.3.4"]',
        "'retry_join_wan' is incompatible with 'connect.enable_mesh_gateway_wan_federation = true'",
    ),
    (
        'primary_datacenter = "one"\ndatacenter = "two"\nprimary_gateways = ["gw:4431"]',
        "'primary_gateways' requires 'server = true'",
    ),
    (
        'server = true\nprimary_gateways = ["gw:4431"]',
        "'primary_gateways' should only be configured in a secondary datacenter",
    ),
]


@pytest.mark.parametrize(("hcl", "message"), SEVEN, ids=[f"err{i}" for i in range(1, 8)])
def test_wanfed_errors_word_for_word(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str], hcl: str, message: str
) -> None:
    assert _err(loadcfg, write, hcl) == message


def test_wanfed_errors_order_by_removal(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    """Start with every problem present; fixing them one by one reveals them in spec order."""
    lines = {
        "connect_enabled": "connect { enabled = true, enable_mesh_gateway_wan_federation = true }",
        "server": "server = true",
        "name": 'node_name = "ab"',
        "sjw": "",
        "rjw": "",
        "dc": 'datacenter = "two"',
    }
    base = {
        "connect_enabled": "connect { enable_mesh_gateway_wan_federation = true }",
        "server": "",
        "name": 'node_name = "a/b"',
        "sjw": 'start_join_wan = ["x"]',
        "rjw": 'retry_join_wan = ["y"]',
        "dc": 'datacenter = "one"',
    }
    common = 'primary_datacenter = "one"\nprimary_gateways = ["gw:1"]\n'
    cur = dict(base)
    got = []
    for key in ["connect_enabled", "server", "name", "sjw", "rjw"]:
        got.append(_err(loadcfg, write, common + "\n".join(cur.values())))
        cur[key] = lines[key]
    # now the client check for primary_gateways is passed (server=true) -> secondary check
    got.append(_err(loadcfg, write, common + "\n".join(cur.values())))
    cur["dc"] = lines["dc"]
    loadcfg(write("c.hcl", common + "\n".join(cur.values())))
    assert got == [m for _, m in SEVEN[:5]] + [SEVEN[6][1]]
    cur["server"] = ""
    assert _err(loadcfg, write, common + "\n".join(cur.values())) == SEVEN[1][1]


def test_primary_gateways_client_error(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    assert _err(loadcfg, write, SEVEN[5][0]) == SEVEN[5][1]


def test_positive_case_secondary_server_with_gateways(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    """Spec 2.2: a server in dc two, primary one, with primary_gateways and wanfed builds."""
    rt = loadcfg(
        write("c.hcl", WANFED_SERVER + 'primary_gateways = ["gw-a:4431", "gw-b:4431"]')
    ).runtime
    assert rt.datacenter == "two"
    assert rt.primary_datacenter == "one"
    assert rt.server_mode
    assert rt.connect_enabled
    assert rt.connect_mesh_gateway_wan_federation_enabled
    assert rt.primary_gateways == ("gw-a:4431", "gw-b:4431")
    assert rt.primary_gateways_interval == 30.0


@pytest.mark.parametrize(
    ("hcl", "message"),
    [
        ('datacenter = "DC 1"', 'datacenter cannot be "dc 1". Please use only [a-z0-9-_].'),
        ('datacenter = ""', "datacenter cannot be empty"),
        (
            'primary_datacenter = "a.b"',
            'primary_datacenter cannot be "a.b". Please use only [a-z0-9-_].',
        ),
        ("ports { http = 70000 }", "ports.http: invalid port: 70000"),
        ("ports { server = 0 }", "server-port must be greater than zero"),
        ("ports { serf_lan = -1 }", "serf-lan-port must be greater than zero"),
        ("bootstrap = true", "'bootstrap = true' requires 'server = true'"),
        ("bootstrap_expect = 3", "'bootstrap_expect > 0' requires 'server = true'"),
        (
            "bootstrap_expect = -1",
            "bootstrap_expect cannot be -1. Must be greater than or equal to zero",
        ),
        (
            "server = true\nbootstrap = true\nbootstrap_expect = 3",
            "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive",
        ),
        ('advertise_addr = "0.0.0.0"', "Advertise address cannot be 0.0.0.0, :: or [::]"),
        ('advertise_addr_wan = "::"', "Advertise WAN address cannot be 0.0.0.0, :: or [::]"),
        (
            'bind_addr = "1.1.1.1 2.2.2.2"',
            "bind_addr cannot contain multiple addresses. Use "
            "'addresses.{dns,http,https}' instead.",
        ),
        ('bind_addr = ""', "bind_addr cannot be empty"),
        (
            'node_meta { consul-x = "1" }',
            "node_meta invalid: Key prefix 'consul-' is reserved for internal use",
        ),
        ('encrypt = "not base64!"', "encrypt has invalid key: Only base64 data is allowed"),
        ("ports { dns = 8500 }", "HTTP address 127.0.0.1:8500 already configured for DNS"),
        (
            'log_level = "loud"',
            "Invalid log level: 'loud'; use one of trace, debug, info, warn, err",
        ),
        ("raft_protocol = 2", "raft_protocol version 2 is not supported by this version of Consul"),
        (
            'services { name = "web", meta { consul-wan-federation = "1" } }',
            "invalid meta for service web: Key prefix 'consul-' is reserved for internal use",
        ),
        ("services { port = 80 }", 'service "": Missing service name'),
    ],
)
def test_consul_checks(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str], hcl: str, message: str
) -> None:
    assert message in _err(loadcfg, write, hcl)


def test_dc_is_lowercased_and_data_dir_required(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str], tmp_path: object
) -> None:
    assert loadcfg(write("c.hcl", 'datacenter = "DC1"')).runtime.datacenter == "dc1"
    from wanfedtx.config import LoadOptions, load

    with pytest.raises(ConfigError, match=r"^data_dir cannot be empty$"):
        one_nic = [IfAddr("eth0", "10.5.0.2", 16, up=True, loopback=False, default_route=True)]
        load(LoadOptions(hostname=lambda: "h", interfaces=lambda: one_nic))  # not this host's


def test_node_name_warnings(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    res = loadcfg(write("c.hcl", 'node_name = "my_node"'))
    assert any("will not be discoverable via DNS" in w for w in res.warnings)
    assert loadcfg(write("c.hcl", "")).runtime.node_name == "testhost"


def test_bootstrap_expect_one_means_bootstrap(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    res = loadcfg(write("c.hcl", "server = true\nbootstrap_expect = 1"))
    assert res.runtime.bootstrap and res.runtime.bootstrap_expect == 0
    assert "BootstrapExpect is set to 1; this is the same as Bootstrap mode." in res.warnings


def test_mesh_gateway_may_carry_federation_meta(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    rt = loadcfg(
        write(
            "g.hcl",
            'services { name = "mesh-gateway", kind = "mesh-gateway", port = 4431, '
            'meta { consul-wan-federation = "1" } }',
        )
    ).runtime
    assert rt.services[0].meta == {"consul-wan-federation": "1"}
    assert rt.services[0].kind == "mesh-gateway"
