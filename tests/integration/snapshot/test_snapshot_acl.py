"""Snapshots with ACLs on, against a real agent (``wanfed agent -dev -data-dir``, raft on,
``acl { enabled = true, default_policy = "deny" }``): a save or restore needs ``acl = "write"``;
no token, an unknown token or ``operator = "write"`` only is 403 and changes nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netutil import free_port

from wanfedtx.cli.demo import poll_until
from wanfedtx.snapshot.archive import read_archive

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
CONFIG = 'acl {\n  enabled = true\n  default_policy = "deny"\n}\n'


class Agent:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.addr = f"127.0.0.1:{port}"

    def http(
        self, method: str, path: str, token: str = "", body: Any = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"http://{self.addr}{path}", data=data, method=method)
        if token:
            req.add_header("X-Consul-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    tmp = tmp_path_factory.mktemp("acl")
    (tmp / "acl.hcl").write_text(CONFIG)
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "wanfed"),
            "agent",
            "-dev",
            "-data-dir",
            str(tmp / "data"),
            "-node",
            "n1",
            "-config-file",
            str(tmp / "acl.hcl"),
            "-http-port",
            str(port),
            "-serf-lan-port",
            str(free_port()),
            "-serf-wan-port",
            str(free_port()),
            "-server-port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp,
    )
    a = Agent(proc, port)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited {proc.returncode}: {proc.communicate()}")
        try:
            code, _, body = a.http("GET", "/v1/status/leader")
        except OSError:
            return False
        return code == 200 and body not in (b'""', b"")

    assert poll_until(ready, 60), "no leader"
    yield a
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def root(agent: Agent) -> str:
    def bootstrapped() -> bool:
        return agent.http("GET", "/v1/acl/policies")[0] == 403  # the leader initialized ACLs

    assert poll_until(bootstrapped, 30)
    code, _, body = agent.http("PUT", "/v1/acl/bootstrap")
    assert code == 200, body
    tok = json.loads(body)
    assert tok["ID"] == tok["SecretID"]
    assert tok["Description"] == "Bootstrap Token (Global Management)"
    again = agent.http("PUT", "/v1/acl/bootstrap")
    assert again[0] == 403 and again[2].startswith(b"Permission denied: ACL bootstrap no longer")
    return str(tok["SecretID"])


def _token(agent: Agent, root: str, name: str, rules: str) -> str:
    code, _, body = agent.http("PUT", "/v1/acl/policy", root, {"Name": name, "Rules": rules})
    assert code == 200, body
    code, _, body = agent.http("PUT", "/v1/acl/token", root, {"Policies": [{"Name": name}]})
    assert code == 200, body
    return str(json.loads(body)["SecretID"])


def test_snapshot_needs_acl_write(agent: Agent, root: str) -> None:
    operator = _token(agent, root, "op-write", 'operator = "write"')
    acl_write = _token(agent, root, "acl-write", 'acl = "write"')
    assert agent.http("PUT", "/v1/kv/before", token=root, raw=b"1")[0] == 200
    for token in ("", operator, "00000000-0000-0000-0000-000000000000"):
        code, _, body = agent.http("GET", "/v1/snapshot", token=token)
        assert code == 403, (token, body)
    code, headers, archive = agent.http("GET", "/v1/snapshot", token=acl_write)
    assert code == 200 and headers["content-type"] == "application/x-gzip"
    meta, _ = read_archive(archive)
    assert headers["x-consul-index"] == str(meta.index)
    assert agent.http("GET", "/v1/snapshot", token=root)[0] == 200
    assert agent.http("PUT", "/v1/kv/after", token=root, raw=b"2")[0] == 200
    code, _, body = agent.http("PUT", "/v1/snapshot", token=operator, raw=archive)
    assert (code, body) == (403, b"Permission denied")
    assert agent.http("GET", "/v1/kv/after", token=root)[0] == 200  # nothing restored
    code, _, body = agent.http("PUT", "/v1/snapshot", token=acl_write, raw=archive)
    assert (code, body) == (200, b"")
    assert agent.http("GET", "/v1/kv/after", token=root)[0] == 404
    assert agent.http("GET", "/v1/kv/before?raw", token=root)[2] == b"1"
    code, _, body = agent.http("PUT", "/v1/snapshot?stale", token=acl_write, raw=archive)
    assert (code, body) == (500, b"stale not allowed for restore")
