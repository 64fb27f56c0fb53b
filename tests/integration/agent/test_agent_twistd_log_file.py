"""``twistd -n wanfed`` with ``log_file``: the agent's lines also go to a rotated
``wanfed-<nanoseconds>.log`` at the configured level, beside twistd's stdout; a ``log_file``
that cannot be created stops the start with one line and no traceback."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from netutil import free_port
from twistd_support import killed_if_left

from wanfedtx.cli.demo import poll_until

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _config(tmp_path: Path, port: int, log_file: str) -> None:
    (tmp_path / "a.hcl").write_text(
        f'bind_addr = "127.0.0.1"\nclient_addr = "127.0.0.1"\nserver = true\nnode_name = "tw"\n'
        f'log_level = "INFO"\nlog_file = "{log_file}"\nlog_rotate_bytes = 100000\n'
        f"ports {{\n  http = {port}\n  serf_lan = {free_port()}\n"
        f"  serf_wan = {free_port()}\n  server = {free_port()}\n}}\n"
    )


def _twistd(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "wanfed", "--config", "a.hcl",
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )


def test_twistd_writes_the_log_file(tmp_path: Path) -> None:
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    _config(tmp_path, port, f"{logs}/agent.log")
    proc = _twistd(tmp_path)
    with killed_if_left(proc):
        assert poll_until(lambda: _serves(f"http://127.0.0.1:{port}/v1/agent/self"), 30)
        assert _serves(f"http://127.0.0.1:{port}/v1/agent/members")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    [log] = list(logs.iterdir())
    assert re.fullmatch(r"agent-\d{19}\.log", log.name), log.name
    text = log.read_text()
    assert "[INFO]  agent: Starting agent: node=tw dc=dc1" in text, text
    assert "[INFO]  agent: Starting agent: node=tw dc=dc1" in out
    assert "[DEBUG]" not in text and "Traceback" not in err


def test_a_log_file_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    _config(tmp_path, free_port(), f"{tmp_path}/missing/dir/agent.log")
    proc = _twistd(tmp_path)
    with killed_if_left(proc):
        out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Failed to setup logging" in out + err
    assert "Traceback" not in out + err, out + err


def test_wanfed_agent_with_a_bad_log_file_is_one_line(tmp_path: Path) -> None:
    _config(tmp_path, free_port(), f"{tmp_path}/missing/agent.log")
    done = subprocess.run(
        [str(BIN / "wanfed"), "agent", "-config-file", str(tmp_path / "a.hcl"),
         "-data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("==> Failed to setup logging: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
