"""Snapshots with ACLs on, against a real agent (``wanfed agent -dev -data-dir``, raft on,
``acl { enabled = true, default_policy = "deny" }``): a save or restore needs ``acl = "write"``;
no token, an unknown token or ``operator = "write"`` only is 403 and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from acl_agent_support import ACLAgent as Agent

from wanfedtx.snapshot.archive import read_archive

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    a = Agent(tmp_path_factory.mktemp("acl")).start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def root(agent: Agent) -> str:
    return agent.bootstrap()


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
