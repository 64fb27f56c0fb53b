"""``twistd -n wanfed`` logs at the agent's ``log_level``: at INFO no DEBUG line (no per-request
access lines, no Twisted factory/port chatter) while the agent serves requests; at DEBUG they
show, tagged ``[DEBUG]``."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from netutil import free_port
from twistd_support import assert_shut_down_cleanly, killed_if_left

from wanfedtx.cli.demo import poll_until

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_twistd_logs_at_the_configured_level(tmp_path: Path, level: str) -> None:
    port = free_port()
    (tmp_path / "a.hcl").write_text(
        f'bind_addr = "127.0.0.1"\nclient_addr = "127.0.0.1"\nserver = true\nnode_name = "tw"\n'
        f'log_level = "{level}"\nports {{\n  http = {port}\n  serf_lan = {free_port()}\n'
        f"  serf_wan = {free_port()}\n  server = {free_port()}\n}}\n"
    )
    proc = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "wanfed", "--config", "a.hcl",
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    with killed_if_left(proc):
        assert poll_until(lambda: _serves(f"http://127.0.0.1:{port}/v1/agent/self"), 30)
        for path in ("/v1/agent/members", "/v1/catalog/datacenters", "/v1/agent/metrics"):
            assert _serves(f"http://127.0.0.1:{port}{path}")
        proc.send_signal(signal.SIGTERM)
        joined, err = proc.communicate(timeout=30)
    assert_shut_down_cleanly(proc, joined, err)
    assert "Server Shut Down." in joined
    assert "[INFO]  agent: Starting agent: node=tw dc=dc1" in joined, joined
    if level == "INFO":
        assert "[DEBUG]" not in joined
        assert "Starting factory" not in joined and "Request finished" not in joined
    else:
        assert "[DEBUG] agent: Request finished: method=GET url=/v1/agent/members" in joined
        assert "Starting factory" not in joined or "[DEBUG]" in joined
