"""``wanfed agent`` and ``twistd -n wanfed`` as real processes: config errors exit 1 with one
line and no traceback; a running agent serves /v1/agent/self and stops cleanly on signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from netutil import free_port
from twistd_support import run_twistd, stops_cleanly

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def _run_agent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "wanfed"), "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("name", "text", "expect"),
    [
        (
            "bad.hcl",
            'datacenter = "x"\nconnect {\n  bogus = true\n}\n',
            ": line 3: invalid config key connect.bogus",
        ),
        (
            "bad.hcl",
            'ports {\n  http = "8500"\n}\n',
            ": line 2: 'ports.http' expected type 'int', got unconvertible type 'string'",
        ),
        ("bad.hcl", 'retry_interval = "10 s"\n', ": line 1: retry_interval: invalid duration"),
        ("bad.hcl", "services {\n  name = \n}\n", ": line 3: syntax error: unexpected '}'"),
        ("bad.json", '{\n "server": "yes"\n}', ": line 2: 'server' expected type 'bool'"),
        (
            "bad.hcl",
            'bind_addr = "127.0.0.1"\nserver = true\nprimary_gateways = ["gw:1"]\n',  # fixed NIC
            "'primary_gateways' should only be configured in a secondary datacenter",
        ),
    ],
)
def test_config_errors_one_line_exit_1(tmp_path: Path, name: str, text: str, expect: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    r = _run_agent("-config-file", str(path), "-data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert expect in lines[0]
    if "line" in expect:
        assert lines[0].startswith(f"Error parsing {path}: line ")


def test_flag_errors(tmp_path: Path) -> None:
    r = _run_agent("-dev", "-datacenter", "bad dc", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == 'datacenter cannot be "bad dc". Please use only [a-z0-9-_].'
    r = _run_agent("-dev", "-http-port", "x", cwd=tmp_path)
    assert r.returncode == 2  # argparse usage error
    assert "Traceback" not in r.stderr


def _wait_for_self(url: str, proc: subprocess.Popen[str], deadline: float) -> dict[str, object]:
    while True:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"agent exited {proc.returncode}: {out}\n{err}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                data: dict[str, object] = json.loads(resp.read())
                return data
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            try:  # wait a little between polls; returns at once if the agent exits
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_dev_agent_serves_and_stops_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "wanfed"), "agent", "-dev", "-node", "devnode", "-http-port", str(port),
            "-serf-lan-port", str(free_port()), "-serf-wan-port", str(free_port()),
            "-server-port", str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        body = _wait_for_self(f"http://127.0.0.1:{port}/v1/agent/self", proc, time.monotonic() + 30)
        assert body["Config"]["NodeName"] == "devnode"  # type: ignore[index]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # a (dev) server neither leaves on SIGTERM nor on SIGINT by default: Consul's exit 1
    assert proc.returncode == 1, err
    assert "==> Starting Consul agent..." in out
    assert f"HTTP API: http://127.0.0.1:{port}/v1/agent/self" in out
    name = "interrupt" if sig == signal.SIGINT else "terminated"
    assert f"==> Caught signal: {name}" in out
    assert "==> Graceful shutdown disabled. Exiting" in out
    assert "shutdown complete" in out
    assert "Traceback" not in err and "Traceback" not in out
    with socket.socket() as s:  # nothing listens on the port any more
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_twistd_plugin_listed_and_serves(tmp_path: Path) -> None:
    env = dict(os.environ)
    listing = run_twistd(tmp_path, "--help", env=env)
    assert "wanfed" in listing.stdout
    port = free_port()
    (tmp_path / "bind.hcl").write_text('bind_addr = "127.0.0.1"\nclient_addr = "127.0.0.1"\n')
    (tmp_path / "server.hcl").write_text(
        f'server = true\nnode_name = "tw"\nports {{\n  http = {port}\n'
        f"  serf_lan = {free_port()}\n  serf_wan = {free_port()}\n  server = {free_port()}\n}}\n"
    )
    cdir = tmp_path / "conf.d"
    cdir.mkdir()
    (cdir / "10-dc.json").write_text('{"datacenter": "twdc"}')
    proc = subprocess.Popen(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "wanfed",
            "--config",
            "bind.hcl",
            "--config",
            "server.hcl",
            "--config-dir",
            str(cdir),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    with stops_cleanly(proc):
        body = _wait_for_self(f"http://127.0.0.1:{port}/v1/agent/self", proc, time.monotonic() + 30)
        assert body["Config"]["NodeName"] == "tw"  # type: ignore[index]
        assert body["Config"]["Datacenter"] == "twdc"  # type: ignore[index]
        assert (tmp_path / "data" / "node-id").read_text() == body["Config"]["NodeID"]  # type: ignore[index]


def test_twistd_config_error_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.hcl").write_text("nope = 1\n")
    r = run_twistd(tmp_path, "-n", "--pidfile=", "wanfed", "--config", "bad.hcl")
    assert r.returncode == 1
    assert (
        r.stderr.strip() == "twistd wanfed: Error parsing bad.hcl: line 1: invalid config key nope"
    )
