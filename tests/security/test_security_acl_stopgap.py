"""ACL stopgap (issue 11, item 4): ``acl.enabled = true`` refuses to start with one line through
both entry points; the other acl keys load with one warning; servers advertise ``acls=0``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from twisted.internet.task import Clock

import wanfedtx
from wanfedtx.agent.gossip import AgentGossip
from wanfedtx.agent.member import lan_tags
from wanfedtx.cli.main import main
from wanfedtx.config import ConfigError, LoadOptions, RuntimeConfig, load
from wanfedtx.config.acl import NOT_AVAILABLE

ENABLED = 'acl {\n  enabled = true\n  default_policy = "deny"\n}\n'
EXPECTED = f"Error parsing acl.hcl: line 2: {NOT_AVAILABLE}"
REPO = Path(wanfedtx.__file__).resolve().parent.parent


def _load(tmp_path: Path, text: str, name: str = "acl.hcl", **flags: object) -> list[str]:
    (tmp_path / name).write_text(text)
    flags.setdefault("data_dir", str(tmp_path / "data"))
    r = load(LoadOptions(config_files=[str(tmp_path / name)], flags=flags, hostname=lambda: "h"))
    return list(r.warnings)


def test_enabled_acl_is_a_config_error_naming_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, ENABLED)
    assert str(exc.value) == f"Error parsing {tmp_path / 'acl.hcl'}: line 2: {NOT_AVAILABLE}"
    assert "\n" not in str(exc.value)


def test_enabled_acl_from_json_and_hcl_flag_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ACLs are not available yet"):
        _load(tmp_path, '{"acl": {"enabled": true}}', name="acl.json")
    with pytest.raises(ConfigError, match="ACLs are not available yet"):
        load(LoadOptions(dev=True, hcl=["acl { enabled = true }"], hostname=lambda: "h"))


def test_disabled_acl_and_other_keys_load_with_one_warning(tmp_path: Path) -> None:
    warnings = _load(
        tmp_path,
        'acl {\n  enabled = false\n  default_policy = "deny"\n  tokens { agent = "t" }\n}\n',
    )
    acl = [w for w in warnings if "acl" in w]
    assert acl == [
        "ACLs are not available yet in this version; these acl keys have no effect: "
        "acl.default_policy, acl.tokens.agent"
    ]


def test_no_acl_block_no_warning(tmp_path: Path) -> None:
    assert not [w for w in _load(tmp_path, 'datacenter = "dc1"\n') if "acl" in w]
    assert not [w for w in _load(tmp_path, "acl { enabled = false }\n") if "acl" in w]


def test_legacy_top_level_acl_keys_are_unknown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid config key acl_datacenter"):
        _load(tmp_path, 'acl_datacenter = "dc1"\n')


def test_wanfed_agent_refuses_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acl.hcl").write_text(ENABLED)
    monkeypatch.chdir(tmp_path)
    rc = main(["agent", "-config-file", "acl.hcl", "-data-dir", str(tmp_path / "d")])
    out = capsys.readouterr()
    assert rc == 1
    assert out.err.strip() == EXPECTED
    assert out.out == ""


def test_twistd_refuses_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "acl.hcl").write_text(ENABLED)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    twistd = Path(sys.executable).parent / "twistd"
    r = subprocess.run(
        [str(twistd), "-n", "--pidfile=", "wanfed", "--config", "acl.hcl", "--data-dir", "d"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 1
    assert r.stderr.strip() == f"twistd wanfed: {EXPECTED}"
    assert "Traceback" not in r.stdout + r.stderr


def _server_rt() -> RuntimeConfig:
    return load(LoadOptions(dev=True, hostname=lambda: "h")).runtime


def test_serf_acls_tag_is_zero_on_lan_and_wan() -> None:
    # even a RuntimeConfig built around the loader cannot make the tag claim enforcement
    rt = attrs.evolve(_server_rt(), acls_enabled=True)
    assert lan_tags(rt)["acls"] == "0"
    gossip = AgentGossip(rt, Clock())
    assert gossip.wan is not None
    assert gossip.lan.config.tags["acls"] == "0"
    assert gossip.wan.config.tags["acls"] == "0"
