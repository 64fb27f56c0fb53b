"""``twistd -n wanfed`` logs as the agent does: Consul-style lines at the configured level.

At ``log_level = "info"`` no DEBUG line appears (not the per-request access log, not Twisted's
``Starting factory`` chatter); at ``debug`` they do, so the filter is what hides them.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from netutil import free_port
from twistd_support import TWISTD

from wanfedtx.cli.demo import poll_until

pytestmark = pytest.mark.integration


def _run_and_stop(tmp_path: Path, level: str) -> str:
    port = free_port()
    (tmp_path / "agent.hcl").write_text(
        f'bind_addr = "127.0.0.1"\nclient_addr = "127.0.0.1"\nserver = true\n'
        f'bootstrap_expect = 1\nnode_name = "tw"\nlog_level = "{level}"\n'
        f"ports {{\n  http = {port}\n  serf_lan = {free_port()}\n"
        f"  serf_wan = {free_port()}\n  server = {free_port()}\n}}\n"
    )
    proc = subprocess.Popen(
        [str(TWISTD), "-n", "--pidfile=", "wanfed", "--config", "agent.hcl",
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}/v1/status/leader"

    def leader_known() -> bool:
        if proc.poll() is not None:
            return True
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read() not in (b'""', b"")
        except OSError:
            return False

    try:
        assert poll_until(leader_known, 30, 0.1) and proc.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/agent/self", timeout=5):
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # two more requests for the access log
            with urllib.request.urlopen(url, timeout=5):
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    return out


def test_info_level_under_twistd_prints_no_debug_line(tmp_path: Path) -> None:
    out = _run_and_stop(tmp_path, "info")
    assert "[INFO]  agent:" in out or "[INFO] " in out, out
    assert "[DEBUG]" not in out, out
    assert "Starting factory" not in out and "starting on" not in out, out
    assert "Traceback" not in out, out


def test_debug_level_under_twistd_shows_what_info_hides(tmp_path: Path) -> None:
    out = _run_and_stop(tmp_path, "debug")
    assert "[DEBUG]" in out, out
    assert "Traceback" not in out, out
