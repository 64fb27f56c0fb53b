"""``/v1/agent/token/<kind>`` on a real agent (``wanfed agent -dev -data-dir``, ACLs on with
``default_policy = "deny"`` and ``enable_token_persistence``): ``wanfed acl set-agent-token
default`` makes token-less requests use that token at once, the token lands in
``<data_dir>/acl-tokens.json`` and is in effect again after a restart; setting a token needs
``acl:write``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from netutil import free_port

from wanfedtx.cli.demo import poll_until

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
CONFIG = (
    'acl {\n  enabled = true\n  default_policy = "deny"\n  enable_token_persistence = true\n}\n'
)


def http(addr: str, method: str, path: str, token: str = "", body: Any = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{addr}{path}", data=data, method=method)
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(tmp: Path, port: int, ports: list[str]) -> subprocess.Popen[str]:
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
            ports[0],
            "-serf-wan-port",
            ports[1],
            "-server-port",
            ports[2],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp,
    )
    addr = f"127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited {proc.returncode}: {proc.communicate()}")
        try:
            # a leader, and it initialized ACLs: the policy list is refused
            if http(addr, "GET", "/v1/status/leader")[1] in (b'""', b""):
                return False
            return http(addr, "GET", "/v1/acl/policies")[0] == 403
        except OSError:
            return False

    assert poll_until(ready, 60), "no leader with ACLs"
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def test_set_agent_token_default_persists_across_a_restart(tmp_path: Path) -> None:
    (tmp_path / "acl.hcl").write_text(CONFIG)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    ports = [str(free_port()) for _ in range(3)]  # the same ones after the restart (raft)
    proc = start(tmp_path, port, ports)
    try:
        code, body = http(addr, "PUT", "/v1/acl/bootstrap")
        assert code == 200, body
        root = json.loads(body)["SecretID"]
        code, body = http(
            addr,
            "PUT",
            "/v1/acl/policy",
            root,
            {"Name": "kv-read", "Rules": 'key_prefix "" { policy = "read" }'},
        )
        assert code == 200, body
        code, body = http(addr, "PUT", "/v1/acl/token", root, {"Policies": [{"Name": "kv-read"}]})
        assert code == 200, body
        reader = json.loads(body)["SecretID"]
        assert http(addr, "GET", "/v1/kv/missing")[0] == 403  # anonymous: deny
        # setting a token needs acl:write: the reader may not
        assert http(addr, "PUT", "/v1/agent/token/default", reader, {"Token": reader}) == (
            403,
            b"Permission denied",
        )
        assert http(addr, "PUT", "/v1/agent/token/bogus", root, {"Token": "x"}) == (
            404,
            b'Token "bogus" is unknown',
        )
        env = dict(os.environ, CONSUL_HTTP_ADDR=addr, CONSUL_HTTP_TOKEN=root)
        done = subprocess.run(
            [str(BIN / "wanfed"), "acl", "set-agent-token", "default", reader],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == 'ACL token "default" set successfully'
        assert http(addr, "GET", "/v1/kv/missing")[0] == 404  # read allowed, key absent
        assert http(addr, "PUT", "/v1/kv/x", body="v")[0] == 403  # but no write
        saved = tmp_path / "data" / "acl-tokens.json"
        assert json.loads(saved.read_text()) == {"default": reader}
    finally:
        stop(proc)
    proc = start(tmp_path, port, ports)
    try:
        # the raft log replayed: the token is known again
        assert poll_until(lambda: http(addr, "GET", "/v1/kv/missing", reader)[0] == 404, 30)
        got = http(addr, "GET", "/v1/kv/missing")
        assert got[0] == 404, got  # the persisted default token
    finally:
        stop(proc)


def test_set_agent_token_usage_errors() -> None:
    for argv, message in (
        ([], "Missing TYPE and TOKEN arguments"),
        (["agent"], "Missing TOKEN argument"),
        (["a", "b", "c"], "Too many arguments: expected 2 got 3"),
        (["nope", "x"], "Unknown token type"),
    ):
        done = subprocess.run(
            [str(BIN / "wanfed"), "acl", "set-agent-token", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and done.stderr.strip() == message, (argv, done.stderr)
