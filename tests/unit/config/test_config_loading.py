"""Parsing and merging: repeated blocks, Consul's block rule, merge order, defaults, dev mode,
error lines for unknown keys, wrong types, bad durations and malformed HCL/JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import hcl
import pytest

from wanfedtx.config import ConfigError, LoadOptions, LoadResult, load
from wanfedtx.config.hclparse import parse_hcl
from wanfedtx.config.schema import SCHEMA, decode

TWO_SERVICES = """
services {
  name = "a"
  port = 1
}
services {
  name = "b"
  port = 2
  meta { x = "1" }
}
"""


def test_stock_pyhcl_loses_fields_of_repeated_blocks() -> None:
    """Why we subclass the parser: stock pyhcl 0.4.5 scatters the second block's fields."""
    stock = hcl.loads(TWO_SERVICES)
    assert [s.get("name") for s in stock["services"]] != ["a", "b"]


def test_repeated_services_blocks_are_kept(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    rt = loadcfg(write("s.hcl", TWO_SERVICES)).runtime
    assert [(s.name, s.port, dict(s.meta)) for s in rt.services] == [
        ("a", 1, {}),
        ("b", 2, {"x": "1"}),
    ]


def test_two_service_blocks_rejected(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    path = write("s.hcl", 'service { name = "a" }\n\nservice {\n name = "b"\n}\n')
    with pytest.raises(ConfigError) as exc:
        loadcfg(path)
    assert str(exc.value) == (
        f"Error parsing {path}: line 3: service: more than one 'service' block; 'service' is "
        "not repeatable; use 'services' to define several"
    )


def test_single_service_block_collapses_and_joins_services(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    a = write("a.hcl", 'service { name = "one", check { id = "c1", ttl = "10s" } }')
    b = write("b.json", json.dumps({"service": {"name": "two", "port": 8}}))
    rt = loadcfg(a, b).runtime
    assert [s.name for s in rt.services] == ["one", "two"]
    assert rt.services[0].checks[0].ttl == 10.0


def test_json_service_list_rejected_services_list_ok(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    bad = write("bad.json", '{\n "service": [{"name": "a"}, {"name": "b"}]\n}')
    with pytest.raises(ConfigError, match=r"line 2: service: more than one 'service' block"):
        loadcfg(bad)
    ok = write("ok.json", '{"services": [{"name": "a"}, {"name": "b", "checks": [{"ttl": "5s"}]}]}')
    assert [s.name for s in loadcfg(ok).runtime.services] == ["a", "b"]


def test_json_lone_surrogates_become_replacement_characters(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    # as Go's decoder does; kept, a node name with one stopped the agent at start (gossip)
    cfg = write("s.json", '{"node_name": "n\\ud800", "node_meta": {"k\\udfff": "v\\ud83d\\ude00"}}')
    rt = loadcfg(cfg).runtime
    assert rt.node_name == "n\ufffd"
    assert rt.node_meta == {"k\ufffd": "v\U0001f600"}


def test_repeated_connect_blocks_rejected(write: Callable[[str, str], str]) -> None:
    obj = parse_hcl("connect { enabled = true }\nconnect { enabled = false }\n", "x.hcl")
    with pytest.raises(ConfigError, match="line 2: connect: more than one 'connect' block"):
        decode(obj, "x.hcl")


def test_merge_rules_hcl_json_and_dir_order(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str], tmp_path: Path
) -> None:
    first = write(
        "first.hcl",
        'datacenter = "dc-a"\nretry_join = ["a"]\nnode_meta { k1 = "1", k2 = "1" }\n'
        "ports { http = 9000 }\n",
    )
    second = write(
        "second.json",
        json.dumps({"datacenter": "dc-b", "retry_join": ["b"], "node_meta": {"k2": "2"}}),
    )
    # a directory: lexical order, only .hcl/.json, sub-directories skipped
    write("d/20-late.hcl", 'datacenter = "dc-d"\nretry_join = ["d"]')
    write("d/10-early.json", '{"datacenter": "dc-c", "retry_join": ["c"]}')
    write("d/30-notes.txt", "not config")
    write("d/sub/99.hcl", 'datacenter = "never"')
    res = loadcfg(first, second, str(tmp_path / "d"))
    rt = res.runtime
    assert rt.datacenter == "dc-d"  # later scalars win
    assert rt.retry_join_lan == ("a", "b", "c", "d")  # lists concatenate in order
    assert rt.node_meta == {"k1": "1", "k2": "2"}  # maps merge
    assert rt.http_port == 9000  # blocks merge key by key; untouched keys keep defaults
    assert rt.dns_port == 8600
    assert any("30-notes.txt" in w for w in res.warnings)
    assert [Path(s).name for s in res.sources if s.startswith("/")] == [
        "first.hcl",
        "second.json",
        "10-early.json",
        "20-late.hcl",
    ]


def test_flags_override_files_and_list_flags_come_first(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    f = write("f.hcl", 'datacenter = "file"\nretry_join = ["file"]\nports { http = 1 }')
    rt = loadcfg(
        f, flags={"datacenter": "flag", "retry_join": ["flag"], "ports": {"http": 2}}
    ).runtime
    assert rt.datacenter == "flag"
    assert rt.retry_join_lan == ("flag", "file")
    assert rt.http_port == 2


def test_defaults_are_consuls(loadcfg: Callable[..., LoadResult]) -> None:
    rt = loadcfg().runtime
    assert (rt.dns_port, rt.http_port, rt.https_port, rt.grpc_port) == (8600, 8500, -1, -1)
    assert (rt.serf_port_lan, rt.serf_port_wan, rt.server_port) == (8301, 8302, 8300)
    assert rt.datacenter == "dc1" and rt.primary_datacenter == "dc1"
    assert rt.dns_domain == "consul." and rt.domain == "consul"
    assert rt.primary_gateways_interval == 30.0
    assert rt.retry_join_interval_lan == 30.0 and rt.retry_join_interval_wan == 30.0
    assert rt.rpc_handshake_timeout == 5.0
    assert not rt.server_mode and not rt.connect_enabled
    assert rt.client_addrs == ("127.0.0.1",) and rt.bind_addr == "0.0.0.0"
    assert rt.advertise_addr_lan == "10.5.0.2"  # the single private IPv4 of the fake host
    assert rt.http_addrs == (("127.0.0.1", 8500),)
    assert rt.grpc_addrs == ()
    assert rt.log_level == "INFO"


def test_dev_mode_defaults() -> None:
    rt = load(LoadOptions(dev=True, hostname=lambda: "devhost")).runtime
    assert rt.dev_mode and rt.server_mode and rt.connect_enabled
    assert rt.bind_addr == "127.0.0.1" and rt.advertise_addr_lan == "127.0.0.1"
    assert rt.node_name == "devhost"
    assert rt.grpc_port == 8502
    assert rt.log_level == "DEBUG"
    assert rt.gossip_lan.probe_interval == 0.1
    assert rt.data_dir == ""


def test_sanitized_looks_like_consuls(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    rt = loadcfg(
        write(
            "x.hcl",
            'encrypt = "pUqJrVyVRj5jsiYEkM/tFQ=="\nacl { tokens { agent = "s3cr3t" } }\n'
            'primary_datacenter = "one"\nserver = true\nprimary_gateways = ["gw:1"]\n'
            'primary_gateways_interval = "1m30s"',
        )
    ).runtime
    s = rt.sanitized()
    assert s["EncryptKey"] == "hidden"
    assert s["ACLAgentToken"] == "hidden"
    assert s["PrimaryGateways"] == ["gw:1"]
    assert s["PrimaryGatewaysInterval"] == "1m30s"
    assert s["HTTPAddrs"] == ["tcp://127.0.0.1:8500"]
    assert s["RPCHandshakeTimeout"] == "5s"
    assert s["ConnectMeshGatewayWANFederationEnabled"] is False
    json.dumps(s)  # serialisable


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        (
            "a.hcl",
            'datacenter = "x"\nconnect {\n  enabeld = true\n}\n',
            3,
            "invalid config key connect.enabeld",
        ),
        ("a.hcl", "\n\nnot_a_key = 1\n", 3, "invalid config key not_a_key"),
        (
            "a.hcl",
            'services {\n name = "x"\n bogus = 1\n}',
            3,
            "invalid config key services[0].bogus",
        ),
        (
            "a.hcl",
            'server = "yes"\n',
            1,
            "'server' expected type 'bool', got unconvertible type 'string'",
        ),
        (
            "a.hcl",
            'ports {\n http = "80"\n}\n',
            2,
            "'ports.http' expected type 'int', got unconvertible type 'string'",
        ),
        (
            "a.hcl",
            'retry_join = "x"\n',
            1,
            "'retry_join' expected type '[]string', got unconvertible type 'string'",
        ),
        (
            "a.hcl",
            'limits {\n\n rpc_handshake_timeout = "5x"\n}',
            3,
            'limits.rpc_handshake_timeout: invalid duration: "5x": time: unknown unit "x" in '
            'duration "5x"',
        ),
        (
            "a.hcl",
            'primary_gateways_interval = "30"',
            1,
            'primary_gateways_interval: invalid duration: "30": time: missing unit in '
            'duration "30"',
        ),
        ("a.hcl", 'datacenter = "x"\nports {\n http = 1\n', 4, "unexpected end of file"),
        ("a.hcl", 'datacenter = "x"\n}\n', 2, "syntax error: unexpected '}'"),
        ("a.hcl", 'a = "x\n', 2, "syntax error: EOF before closing string quote"),
        ("a.json", '{\n  "datacenter": "x",\n  "bogus": true\n}', 3, "invalid config key bogus"),
        (
            "a.json",
            '{\n  "server": 1\n}',
            2,
            "'server' expected type 'bool', got unconvertible type 'int'",
        ),
        ("a.json", '{\n  "datacenter": "x",\n}', 3, "JSON syntax error: expected a string key"),
        (
            "a.hcl",
            'advertise_addr = "{{ GetAllInterfaces }}"',
            1,
            'advertise_addr: error parsing "{{ GetAllInterfaces }}": function "GetAllInterfaces" '
            "not supported",
        ),
    ],
)
def test_errors_name_file_line_and_key(
    loadcfg: Callable[..., LoadResult],
    write: Callable[[str, str], str],
    name: str,
    text: str,
    line: int,
    message: str,
) -> None:
    path = write(name, text)
    with pytest.raises(ConfigError) as exc:
        loadcfg(path)
    rendered = str(exc.value)
    assert rendered.startswith(f"Error parsing {path}: line {line}: ")
    assert message in rendered
    assert "\n" not in rendered


def test_negative_interval_rejected(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    path = write("n.hcl", 'server = true\n\nprimary_gateways_interval = "-1s"')
    with pytest.raises(ConfigError) as exc:
        loadcfg(path)
    assert str(exc.value) == (
        f"Error parsing {path}: line 3: primary_gateways_interval cannot be -1s. Must be positive"
    )


def test_missing_file_and_bad_extension(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="config: Open failed on"):
        loadcfg(str(tmp_path / "nope.hcl"))
    txt = write("x.conf", 'datacenter = "a"')
    with pytest.raises(ConfigError, match="has unknown extension"):
        loadcfg(txt)
    assert loadcfg(txt, config_format="hcl").runtime.datacenter == "a"


def test_every_schema_key_has_a_doc() -> None:
    from wanfedtx.config.schema import walk_fields

    missing = [p for p, f in walk_fields(SCHEMA) if not f.doc and f.kind != "block"]
    assert missing == []


def test_every_key_is_documented() -> None:
    from wanfedtx.config.schema import CHECK, SERVICE, walk_fields

    doc = (Path(__file__).resolve().parents[3] / "docs" / "configuration.md").read_text()
    missing = []
    for path, _f in walk_fields(SCHEMA):
        root = path.split(".")[0].split("[")[0]
        if root in ("service", "services", "check", "checks") and path != root:
            continue
        if f"`{path}`" not in doc:
            missing.append(path)
    for path, _f in [*walk_fields(SERVICE), *walk_fields(CHECK)]:
        if path.startswith(("check.", "checks[]")):
            continue
        if f"| `{path}` |" not in doc:
            missing.append(path)
    assert missing == []


def test_huge_numbers_are_parse_errors(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    """Found while fuzzing by hand: Python refuses int() of more than 4300 digits."""
    for name, text in (
        ("n.json", '{"server_port": ' + "9" * 5000 + "}"),
        ("n.hcl", "a = " + "9" * 5000),
    ):
        with pytest.raises(ConfigError, match="Exceeds the limit"):
            loadcfg(write(name, text))
