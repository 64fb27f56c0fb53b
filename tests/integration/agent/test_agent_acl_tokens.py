"""``/v1/agent/token/<kind>`` on a real agent (``wanfed agent -dev -data-dir``, ACLs on with
``default_policy = "deny"`` and ``enable_token_persistence``): ``wanfed acl set-agent-token
default`` makes token-less requests use that token at once, the token lands in
``<data_dir>/acl-tokens.json`` and is in effect again after a restart; setting a token needs
``acl:write``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from acl_agent_support import BIN, ACLAgent

from wanfedtx.cli.demo import poll_until

pytestmark = pytest.mark.integration

CONFIG = (
    'acl {\n  enabled = true\n  default_policy = "deny"\n  enable_token_persistence = true\n}\n'
)


def http(agent: ACLAgent, method: str, path: str, token: str = "",
         body: Any = None) -> tuple[int, bytes]:
    code, _, data = agent.http(method, path, token, body)
    return code, data


def test_set_agent_token_default_persists_across_a_restart(tmp_path: Path) -> None:
    agent = ACLAgent(tmp_path, CONFIG).start()
    addr = agent.addr
    try:
        code, body = http(agent, "PUT", "/v1/acl/bootstrap")
        assert code == 200, body
        root = json.loads(body)["SecretID"]
        code, body = http(
            agent,
            "PUT",
            "/v1/acl/policy",
            root,
            {"Name": "kv-read", "Rules": 'key_prefix "" { policy = "read" }'},
        )
        assert code == 200, body
        code, body = http(agent, "PUT", "/v1/acl/token", root, {"Policies": [{"Name": "kv-read"}]})
        assert code == 200, body
        reader = json.loads(body)["SecretID"]
        assert http(agent, "GET", "/v1/kv/missing")[0] == 403  # anonymous: deny
        # setting a token needs acl:write: the reader may not
        assert http(agent, "PUT", "/v1/agent/token/default", reader, {"Token": reader}) == (
            403,
            b"Permission denied",
        )
        assert http(agent, "PUT", "/v1/agent/token/bogus", root, {"Token": "x"}) == (
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
        assert http(agent, "GET", "/v1/kv/missing")[0] == 404  # read allowed, key absent
        assert http(agent, "PUT", "/v1/kv/x", body="v")[0] == 403  # but no write
        saved = tmp_path / "data" / "acl-tokens.json"
        assert json.loads(saved.read_text()) == {"default": reader}
    finally:
        agent.stop()
    agent.start()  # the same ports again: raft keeps its address
    try:
        # the raft log replayed: the token is known again
        assert poll_until(lambda: http(agent, "GET", "/v1/kv/missing", reader)[0] == 404, 30)
        got = http(agent, "GET", "/v1/kv/missing")
        assert got[0] == 404, got  # the persisted default token
    finally:
        agent.stop()


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
