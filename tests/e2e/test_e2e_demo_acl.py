"""``wanfed demo -acl -check``: the case-wanfed-gw federation with ACLs on and
``default_policy = "deny"``, end to end.

The demo bootstraps the primary, writes the replication, agent and gateway tokens, and exits 0
only when the case's checks hold with the management token and the ACL checks hold too: a KV
write without a token is refused in both datacenters, the secondary replicates the primary's
ACLs, and a token created in the primary after the start works in the secondary (and only on
its ``key_prefix``). The gateway registrations carry their own tokens.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_acl_checks_pass(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "wanfed"
    out = subprocess.run(
        [
            str(exe),
            "demo",
            "-acl",
            "-check",
            "-timeout",
            "180",
            "-dir",
            str(tmp_path),
            "-primary-ip",
            "127.0.41.1",
            "-secondary-ip",
            "127.0.42.1",
        ],
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout
    assert re.search(r"ACLs bootstrapped; management token \(SecretID\): [0-9a-f-]{36}", out.stdout)
    for dc in ("primary", "secondary"):
        assert f"ok   {dc}: a KV write without a token is refused (403)" in out.stdout
        assert f"ok   {dc}: Connect CA roots name the primary's trust domain" in out.stdout
    assert "ok   secondary: replicates the primary's ACLs (/v1/acl/replication)" in out.stdout
    assert "ok   secondary: a token created in the primary works here" in out.stdout
    for dc in ("primary", "secondary"):
        acl = (tmp_path / dc / "consul" / "acl.hcl").read_text()
        assert 'default_policy = "deny"' in acl
        gateway = (tmp_path / dc / "consul" / "gateway.hcl").read_text()
        assert re.search(r'token = "[0-9a-f-]{36}"', gateway)
    assert "replication = " in (tmp_path / "secondary" / "consul" / "acl.hcl").read_text()


def test_demo_acl_refuses_the_production_layout() -> None:
    exe = Path(sys.executable).parent / "wanfed"
    out = subprocess.run(
        [str(exe), "demo", "-acl", "-servers", "3", "-clients", "2", "-check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "-acl runs the one-server layout" in out.stderr
    assert "Traceback" not in out.stderr
