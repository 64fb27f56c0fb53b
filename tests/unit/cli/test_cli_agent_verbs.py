"""``wanfed operator raft``, ``join``, ``leave``, ``force-leave``, ``reload``, ``info``,
``monitor``, ``keygen``, ``validate`` and ``completion``: Consul's output and exit codes, the HTTP
verbs against the real route families in memory."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_support import FOLLOWER, STRANGER, AgentAPI, api

from wanfedtx.cli import httpapi
from wanfedtx.cli.main import main

__all__ = ["api"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_operator_raft_list_peers(api: AgentAPI, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "operator", "raft", "list-peers")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Node       ID                                    Address         State     Voter  "
        "RaftProtocol",
        "s1         0f3c5a1e-8d2b-4c7a-9e61-2b7d4c9a1f00  10.0.0.10:8300  leader    true   3",
        "s2         7a41d2c3-55e0-4b8e-a1f2-93c04d6e7b11  10.0.0.11:8300  follower  true   3",
        "(unknown)  10.0.0.12:8300                        10.0.0.12:8300  follower  true   "
        "unknown",
    ]
    run(capsys, "operator", "raft", "list-peers", "-stale")
    assert api.calls[-1][1]["AllowStale"] is True


def test_operator_raft_remove_peer(api: AgentAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "operator", "raft", "remove-peer") == (
        1, "", "Error removing peer: an address or id is required for the peer to remove\n")
    assert run(capsys, "operator", "raft", "remove-peer", "-address=a:1", "-id=x") == (
        1, "", "Error removing peer: cannot give both an address and id\n")
    assert run(capsys, "operator", "raft", "remove-peer", f"-address={STRANGER}") == (
        0, f'Removed peer with address "{STRANGER}"\n', "")
    assert run(capsys, "operator", "raft", "remove-peer",
               "-id=7a41d2c3-55e0-4b8e-a1f2-93c04d6e7b11") == (
        0, 'Removed peer with id "7a41d2c3-55e0-4b8e-a1f2-93c04d6e7b11"\n', "")
    assert api.raft.removed == [STRANGER, FOLLOWER]
    assert run(capsys, "operator", "raft", "remove-peer", "-address=9.9.9.9:8300") == (
        1, "", 'Error removing peer: Unexpected response code: 500 (address "9.9.9.9:8300" was '
        "not found in the Raft configuration)\n")
    assert run(capsys, "operator", "raft", "remove-peer", "-id=nope")[2] == (
        'Error removing peer: Unexpected response code: 500 (id "nope" was not found in the '
        "Raft configuration)\n")
    api.raft.refuse = "cannot remove the last voter"
    assert run(capsys, "operator", "raft", "remove-peer", "-address=10.0.0.10:8300")[2] == (
        "Error removing peer: Unexpected response code: 500 (cannot remove the last voter)\n")
    assert run(capsys, "operator")[0] == 1


def test_join_leave_force_leave(api: AgentAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "join", "10.0.0.1", "10.0.0.2") == (
        0, "Successfully joined cluster by contacting 2 nodes.\n", "")
    assert run(capsys, "join", "-wan", "bad1", "10.0.0.3") == (
        0, "Successfully joined cluster by contacting 1 nodes.\n",
        "Error joining address 'bad1': Unexpected response code: 500 (Failed to join bad1: "
        "dial failed)\n")
    assert api.agent.joined[-1] == ("10.0.0.3", True)
    code, _, err = run(capsys, "join", "bad2")
    assert code == 1 and err.endswith("Failed to join any nodes.\n")
    code, _, err = run(capsys, "join")
    assert code == 1 and err.startswith("At least one address to join must be specified.\n")
    assert run(capsys, "leave") == (0, "Graceful leave complete\n", "")
    assert api.agent.left == 1
    assert run(capsys, "leave", "x", "y") == (1, "", "Error found unexpected args: [x y]\n")
    assert run(capsys, "force-leave", "-prune", "n2") == (0, "", "")
    assert api.agent.forced == [("n2", True)]
    assert run(capsys, "force-leave", "n3") == (
        1, "", "Error force leaving: Unexpected response code: 500 (agent: No node found with "
        "name 'n3')\n")
    assert run(capsys, "force-leave")[2].startswith(
        "A single node name must be specified to force leave.\n")


def test_reload_and_info(api: AgentAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "reload") == (0, "Configuration reload triggered\n", "")
    api.agent.reload_error = "Failed to reload configs: boom"
    assert run(capsys, "reload") == (
        1, "", "Error reloading: Unexpected response code: 500 (Failed to reload configs: "
        "boom)\n")
    assert run(capsys, "info") == (
        0,
        "agent:\n\tchecks = 0\n\tservices = 2\nconsul:\n\tacl = disabled\n"
        "\tknown_servers = 1\n\tserver = true\n",
        "",
    )


def test_monitor_prints_lines_and_reports_a_closed_stream(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[httpapi.Request] = []

    def transport(req: httpapi.Request, stream: bool) -> httpapi.Response:
        sent.append(req)
        assert stream
        return httpapi.Response(200, b"", {}, iter([b"line one\n", b"line two\n"]))

    monkeypatch.setattr(httpapi, "TRANSPORT", [transport])
    assert run(capsys, "monitor", "-http-addr=h:1", "-log-level=debug") == (
        1, "line one\nline two\n",
        "Remote side ended the monitor! This usually means that the\n"
        "remote side has exited or crashed.\n")
    assert sent[0].url == "http://h:1/v1/agent/monitor?loglevel=debug"
    assert sent[0].timeout is None

    def interrupted() -> Any:
        yield b"first\n"
        raise KeyboardInterrupt

    monkeypatch.setattr(httpapi, "TRANSPORT",
                        [lambda req, stream: httpapi.Response(200, b"", {}, interrupted())])
    assert run(capsys, "monitor", "-http-addr=h:1") == (0, "first\n", "")
    monkeypatch.setattr(httpapi, "TRANSPORT",
                        [lambda req, stream: httpapi.Response(400, b"Unknown log level: x")])
    assert run(capsys, "monitor", "-http-addr=h:1", "-log-level=x") == (
        1, "", "Error starting monitor: Unexpected response code: 400 (Unknown log level: x)\n")


def test_keygen_is_32_random_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "keygen")
    key = out.strip()
    assert code == 0 and len(key) == 44 and len(base64.b64decode(key, validate=True)) == 32
    assert run(capsys, "keygen")[1].strip() != key


def test_validate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.hcl").write_text(
        'datacenter = "dc1"\ndata_dir = "/tmp/x"\nserver = true\nbind_addr = "127.0.0.1"\n')
    (good / "b.json").write_text('{"node_name": "n1"}')
    assert run(capsys, "validate", str(good)) == (0, "Configuration is valid!\n", "")
    assert run(capsys, "validate", "-quiet", str(good / "a.hcl")) == (0, "", "")
    bad = tmp_path / "bad.hcl"
    bad.write_text('datacenter = "x"\nconnect {\n  bogus = true\n}\n')
    code, out, err = run(capsys, "validate", str(bad))
    assert (code, out) == (1, "")
    assert err == f"Config validation failed: Error parsing {bad}: line 3: invalid config key " \
        "connect.bogus\n"
    assert run(capsys, "validate") == (1, "", "Must specify at least one config file or "
                                       "directory\n")


def test_completion_scripts_complete_verbs_and_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, script, _ = run(capsys, "completion", "bash")
    assert code == 0 and "complete -o default -F _wanfed wanfed" in script
    path = tmp_path / "c.sh"
    path.write_text(script)
    probe = (
        f"source {path}\n"
        "COMP_WORDS=(wanfed operator raft l); COMP_CWORD=3; _wanfed; echo \"${COMPREPLY[@]}\"\n"
        "COMP_WORDS=(wanfed kv put -mo); COMP_CWORD=3; _wanfed; echo \"${COMPREPLY[@]}\"\n"
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines() == ["list-peers", "-modify-index"]
    zsh = run(capsys, "completion", "zsh")[1]
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n")
