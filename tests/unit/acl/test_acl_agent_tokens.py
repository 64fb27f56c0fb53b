"""The agent's tokens at run time: ``PUT /v1/agent/token/<kind>`` with Consul's names (and the
older ones), persistence to ``acl-tokens.json`` and its loading at start."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from treq.testing import StubTreq

from wanfedtx.acl.tokens import TOKENS_FILE, AgentTokens, UnknownTokenKind
from wanfedtx.http.acl_agent_token import AgentTokenRoutes


def put(routes: AgentTokenRoutes, kind: str, body: Any) -> tuple[int, bytes]:
    stub = StubTreq(routes.app.resource())
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    got: list[Any] = []
    stub.request("PUT", f"http://127.0.0.1/v1/agent/token/{kind}", data=data).addBoth(got.append)
    stub.flush()
    content: list[bytes] = []
    stub.content(got[0]).addCallback(content.append)
    stub.flush()
    return got[0].code, content[0]


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("default", "default"),
        ("acl_token", "default"),
        ("agent", "agent"),
        ("acl_agent_token", "agent"),
        ("agent_master", "agent_master"),
        ("agent_recovery", "agent_master"),
        ("acl_agent_master_token", "agent_master"),
        ("replication", "replication"),
        ("acl_replication_token", "replication"),
    ],
)
def test_every_consul_name_sets_its_token(kind: str, field: str) -> None:
    tokens = AgentTokens()
    heard: list[str] = []
    tokens.subscribe(heard.append)
    routes = AgentTokenRoutes(tokens, acls_enabled=True)
    assert put(routes, kind, {"Token": "s3cret"}) == (200, b"")
    assert tokens.get(field) == "s3cret"
    assert heard == [field]


def test_agent_token_falls_back_to_default() -> None:
    tokens = AgentTokens(default="d")
    assert tokens.agent == "d"
    tokens.set("agent", "a")
    assert tokens.agent == "a"


def test_refusals_are_one_line() -> None:
    tokens = AgentTokens()
    routes = AgentTokenRoutes(tokens, acls_enabled=True)
    assert put(routes, "bogus", {"Token": "x"}) == (404, b'Token "bogus" is unknown')
    code, body = put(routes, "default", b"{not json")
    assert code == 400 and body.startswith(b"Request decode failed:") and b"\n" not in body
    assert put(routes, "default", {"Token": 5})[0] == 400
    assert put(routes, "default", [1])[0] == 400
    assert tokens.default == ""
    off = AgentTokenRoutes(tokens, acls_enabled=False)
    assert put(off, "default", {"Token": "x"}) == (401, b"ACL support disabled")
    with pytest.raises(UnknownTokenKind):
        tokens.set("master", "x")  # the CLI's name; the URL says agent_master


def test_persisted_tokens_survive_a_restart(tmp_path: Path) -> None:
    def start() -> AgentTokens:
        return AgentTokens.from_config(
            default="conf-default",
            agent="conf-agent",
            agent_master="",
            replication="conf-repl",
            data_dir=str(tmp_path),
            persistence=True,
        )

    first = start()
    assert first.default == "conf-default"
    assert not (tmp_path / TOKENS_FILE).exists()
    first.set("acl_token", "api-default")
    first.set("replication", "api-repl")
    path = tmp_path / TOKENS_FILE
    # only the tokens set through the API, under Consul's keys, readable by the owner alone
    assert json.loads(path.read_text()) == {"default": "api-default", "replication": "api-repl"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = start()
    assert (second.default, second.agent, second.replication) == (
        "api-default",
        "conf-agent",
        "api-repl",
    )
    second.set("replication", "")  # cleared through the API: dropped from the file
    assert json.loads(path.read_text()) == {"default": "api-default"}


def test_without_persistence_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / TOKENS_FILE).write_text('{"default": "old"}')
    tokens = AgentTokens.from_config(
        default="conf",
        agent="",
        agent_master="",
        replication="",
        data_dir=str(tmp_path),
        persistence=False,
    )
    assert tokens.default == "conf"  # the file is ignored
    tokens.set("default", "new")
    assert json.loads((tmp_path / TOKENS_FILE).read_text()) == {"default": "old"}


@pytest.mark.parametrize(
    "content", [b"{broken", b"[1, 2]", b'{"default": 5}', b"[" * 100_000, b"\xff\xfe"]
)
def test_a_bad_tokens_file_keeps_the_configuration(tmp_path: Path, content: bytes) -> None:
    (tmp_path / TOKENS_FILE).write_bytes(content)
    tokens = AgentTokens.from_config(
        default="conf",
        agent="",
        agent_master="",
        replication="",
        data_dir=str(tmp_path),
        persistence=True,
    )
    assert tokens.default == "conf"


def test_persist_failure_is_a_500_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    tokens = AgentTokens(persist_path=str(blocker / TOKENS_FILE))  # its directory is a file
    code, body = put(AgentTokenRoutes(tokens, acls_enabled=True), "agent", {"Token": "x"})
    assert code == 500 and body.startswith(b"Failed to persist tokens - ") and b"\n" not in body


def test_a_replication_token_set_at_run_time_starts_an_idle_replicator() -> None:
    from acl_support import MASTER, Net
    from twisted.internet import task

    net = Net(task.Clock())
    net.add("dc1", "dc1", initial_management=MASTER)
    net.servers["dc1"].startService()
    net.add("dc2", "dc1", replication_token="")
    net.servers["dc2"].startService()
    net.clock.advance(5)
    assert not net.rpc("dc2", "ACL.ReplicationStatus", {}).get("Running")
    net.acls["dc2"].set_replication_token(MASTER)  # what PUT /v1/agent/token/replication does
    net.clock.advance(1)
    status = net.rpc("dc2", "ACL.ReplicationStatus", {})
    assert status["Running"] and status["ReplicatedIndex"] > 0
    assert net.servers["dc2"].fsm.state.acl_token_get_by_secret(None, MASTER)[1] is not None


def test_an_empty_replication_token_idles_replication_until_a_new_one() -> None:
    from acl_support import MASTER, Net
    from twisted.internet import task

    net = Net(task.Clock())
    net.add("dc1", "dc1", initial_management=MASTER)
    net.servers["dc1"].startService()
    net.add("dc2", "dc1", replication_token=MASTER)
    net.servers["dc2"].startService()
    net.clock.advance(1)
    net.acls["dc2"].set_replication_token("")
    net.clock.advance(2)
    assert net.rpc("dc2", "ACL.ReplicationStatus", {})["Running"] is False
    tok = net.rpc("dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {}})
    net.clock.advance(5)
    dc2 = net.servers["dc2"].fsm.state
    assert dc2.acl_token_get(None, tok["AccessorID"])[1] is None  # not replicated while idle
    net.acls["dc2"].set_replication_token(MASTER)
    net.clock.advance(0)
    assert dc2.acl_token_get(None, tok["AccessorID"])[1] is not None
    assert net.rpc("dc2", "ACL.ReplicationStatus", {})["Running"] is True
