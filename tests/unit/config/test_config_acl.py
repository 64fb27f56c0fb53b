"""The acl block: Consul's errors for bad policies, the old ``master`` name, the serf tag."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from twisted.internet.task import Clock

from wanfedtx.agent.gossip import AgentGossip
from wanfedtx.agent.member import lan_tags
from wanfedtx.cli.main import main
from wanfedtx.config import ConfigError, LoadOptions, RuntimeConfig, load
from wanfedtx.config.acl import NON_UUID_MASTER


def _load(tmp_path: Path, text: str, name: str = "acl.hcl") -> tuple[RuntimeConfig, list[str]]:
    (tmp_path / name).write_text(text)
    r = load(
        LoadOptions(
            config_files=[str(tmp_path / name)],
            flags={"data_dir": str(tmp_path / "data"), "server": True, "bind_addr": "127.0.0.1"},
            hostname=lambda: "h",
        )
    )
    return r.runtime, list(r.warnings)


def test_enabled_acl_loads_with_every_key(tmp_path: Path) -> None:
    rt, warnings = _load(
        tmp_path,
        'primary_datacenter = "dc1"\n'
        'acl {\n  enabled = true\n  default_policy = "deny"\n  down_policy = "async-cache"\n'
        '  enable_token_persistence = true\n  token_ttl = "45s"\n  policy_ttl = "1m"\n'
        '  tokens {\n    initial_management = "6a1253d2-1785-24fd-91c2-f8e78c745511"\n'
        '    agent = "a"\n    replication = "r"\n    default = "d"\n  }\n}\n',
    )
    assert rt.acls_enabled
    assert rt.acl_default_policy == "deny"
    assert rt.acl_down_policy == "async-cache"
    assert rt.acl_enable_token_persistence
    assert (rt.acl_token_ttl, rt.acl_policy_ttl) == (45.0, 60.0)
    assert rt.acl_tokens.initial_management == "6a1253d2-1785-24fd-91c2-f8e78c745511"
    assert (rt.acl_tokens.agent, rt.acl_tokens.replication, rt.acl_tokens.default) == (
        "a",
        "r",
        "d",
    )
    assert rt.primary_datacenter == "dc1"
    assert not [w for w in warnings if "acl" in w.lower()]


def test_defaults(tmp_path: Path) -> None:
    rt, _ = _load(tmp_path, "acl { enabled = true }\n")
    assert rt.acl_default_policy == "allow"
    assert rt.acl_down_policy == "extend-cache"
    assert (rt.acl_token_ttl, rt.acl_policy_ttl) == (30.0, 30.0)
    assert rt.primary_datacenter == rt.datacenter


def test_master_is_the_older_name_and_non_uuid_warns(tmp_path: Path) -> None:
    rt, warnings = _load(tmp_path, 'acl { enabled = true\n tokens { master = "root" } }\n')
    assert rt.acl_tokens.initial_management == "root"
    assert NON_UUID_MASTER in warnings


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('acl {\n  default_policy = "Deny"\n}\n', "line 2: Unsupported default ACL policy: Deny"),
        (
            'acl {\n  enabled = true\n  down_policy = "x"\n}\n',
            "line 3: Unsupported down ACL policy: x",
        ),
        ("acl {\n  enabled = true\n  nope = 1\n}\n", "invalid config key acl.nope"),
        ('acl {\n  token_ttl = "soon"\n}\n', "token_ttl"),
        ('acl_datacenter = "dc1"\n', "invalid config key acl_datacenter"),
    ],
)
def test_bad_values_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, text)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_json_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unsupported default ACL policy: maybe"):
        _load(tmp_path, '{"acl": {"default_policy": "maybe"}}', name="acl.json")


def test_wanfed_agent_bad_policy_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acl.hcl").write_text('acl {\n  enabled = true\n  default_policy = "nope"\n}\n')
    monkeypatch.chdir(tmp_path)
    rc = main(
        ["agent", "-config-file", "acl.hcl", "-bind", "127.0.0.1", "-data-dir", str(tmp_path / "d")]
    )
    out = capsys.readouterr()
    assert rc == 1
    assert out.err.strip() == "Error parsing acl.hcl: line 3: Unsupported default ACL policy: nope"


def test_serf_acls_tag_follows_enabled() -> None:
    rt = load(LoadOptions(dev=True, hostname=lambda: "h")).runtime
    assert lan_tags(rt)["acls"] == "0"
    on = attrs.evolve(rt, acls_enabled=True)
    assert lan_tags(on)["acls"] == "1"
    gossip = AgentGossip(on, Clock())
    assert gossip.wan is not None
    assert gossip.lan.config.tags["acls"] == "1"
    assert gossip.wan.config.tags["acls"] == "1"
