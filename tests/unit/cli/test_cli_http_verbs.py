"""``wanfed kv`` and ``wanfed catalog`` against the real route families in memory: Consul's output
shapes, messages and exit codes; the client flags and environment variables."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cli_support import AgentAPI, api

from wanfedtx.cli.httpapi import columnize, tabwrite
from wanfedtx.cli.main import main

__all__ = ["api"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def register(api: AgentAPI, node: str, node_id: str, services: dict[str, list[str]],
             meta: dict[str, str] | None = None) -> None:
    for name, tags in services.items() or {"": []}.items():
        body: dict[str, Any] = {"Node": node, "ID": node_id, "Address": "10.0.0.21",
                                "Datacenter": "dc1", "NodeMeta": meta or {},
                                "TaggedAddresses": {"lan": "10.0.0.21"}}
        if name:
            body["Service"] = {"Service": name, "ID": name, "Tags": tags}
        d = api.rpc("Catalog.Register", body)
        got: list[Any] = []
        d.addBoth(got.append)
        assert got == [True] or got == [None], got


# -- kv ------------------------------------------------------------------------------------------


def test_kv_put_get_plain_detailed_and_missing(api: AgentAPI,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "kv", "put", "app/config", "hello") == (
        0, "Success! Data written to: app/config\n", "")
    assert run(capsys, "kv", "get", "/app/config") == (0, "hello\n", "")
    code, out, _ = run(capsys, "kv", "get", "-detailed", "app/config")
    assert code == 0
    assert out.splitlines() == [
        "CreateIndex      1",
        "Flags            0",
        "Key              app/config",
        "LockIndex        0",
        "ModifyIndex      1",
        "Session          -",
        "Value            hello",
    ]
    assert run(capsys, "kv", "get", "-base64", "app/config") == (0, "aGVsbG8=\n", "")
    assert run(capsys, "kv", "get", "app/nope") == (1, "", "Error! No key exists at: app/nope\n")
    assert run(capsys, "kv", "get") == (1, "", "Error! Missing KEY argument\n")
    assert run(capsys, "kv", "get", "a", "b") == (
        1, "", "Too many arguments (expected 1, got 2)\n")


def test_kv_recurse_keys_and_separator(api: AgentAPI,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in (("app/a", "1"), ("app/b/c", "2"), ("top", "3")):
        assert run(capsys, "kv", "put", key, value)[0] == 0
    assert run(capsys, "kv", "get", "-recurse", "app") == (0, "app/a:1\napp/b/c:2\n", "")
    assert run(capsys, "kv", "get", "-recurse", "-base64", "app/a")[1] == "app/a:MQ==\n"
    assert run(capsys, "kv", "get", "-keys")[1] == "app/\ntop\n"
    assert run(capsys, "kv", "get", "-keys", "app/")[1] == "app/a\napp/b/\n"
    assert run(capsys, "kv", "get", "-keys", "-separator=", "app/")[1] == "app/a\napp/b/c\n"
    code, out, _ = run(capsys, "kv", "get", "-recurse", "-detailed", "app")
    blocks = out.split("\n\n")
    assert code == 0 and len(blocks) == 2 and "Key              app/b/c" in blocks[1]
    assert run(capsys, "kv", "get", "-recurse", "none") == (0, "", "")


def test_kv_put_flags_file_stdin_cas(api: AgentAPI, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "v.bin"
    data.write_bytes(b"from file")
    assert run(capsys, "kv", "put", "-flags=42", "f", f"@{data}")[0] == 0
    assert "Flags            42" in run(capsys, "kv", "get", "-detailed", "f")[1]
    assert run(capsys, "kv", "get", "f")[1] == "from file\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    assert run(capsys, "kv", "put", "s", "-")[0] == 0
    assert run(capsys, "kv", "get", "s")[1] == "from stdin\n"
    assert run(capsys, "kv", "put", "-base64", "b", "aGk=")[0] == 0
    assert run(capsys, "kv", "get", "b")[1] == "hi\n"
    assert run(capsys, "kv", "put", "x", f"@{tmp_path / 'missing'}")[0] == 1
    assert run(capsys, "kv", "put", "-cas", "f", "v") == (
        1, "", "Must specify -modify-index with -cas!\n")
    assert run(capsys, "kv", "put", "-cas", "-modify-index=999", "f", "v") == (
        1, "", "Error! Did not write to f: CAS failed\n")
    assert run(capsys, "kv", "put", "-cas", "-modify-index=1", "f", "v") == (
        0, "Success! Data written to: f\n", "")
    assert run(capsys, "kv", "put", "-acquire", "f", "v") == (
        1, "", "Error! Missing -session (required with -acquire and -release)\n")
    assert run(capsys, "kv", "put") == (1, "", "Error! Missing KEY argument\n")


def test_kv_delete(api: AgentAPI, capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("p/a", "p/b", "q"):
        run(capsys, "kv", "put", key, "v")
    assert run(capsys, "kv", "delete", "q") == (0, "Success! Deleted key: q\n", "")
    assert run(capsys, "kv", "delete", "q") == (0, "Success! Deleted key: q\n", "")
    assert run(capsys, "kv", "delete", "-recurse", "p") == (
        0, "Success! Deleted keys with prefix: p\n", "")
    assert run(capsys, "kv", "get", "-recurse", "p") == (0, "", "")
    assert run(capsys, "kv", "delete", "-cas", "q")[2] == "Must specify -modify-index with -cas!\n"
    assert run(capsys, "kv", "delete", "-modify-index=3", "q")[2] == (
        "Cannot specify -modify-index without -cas!\n")
    assert run(capsys, "kv", "delete", "-cas", "-modify-index=3", "-recurse", "q")[2] == (
        "Cannot specify both -cas and -recurse!\n")
    run(capsys, "kv", "put", "r", "v")
    assert run(capsys, "kv", "delete", "-cas", "-modify-index=1", "r") == (
        1, "", "Error! Did not delete key r: CAS failed\n")
    assert run(capsys, "kv", "delete") == (1, "", "Error! Missing KEY argument\n")


def test_kv_export_import_round_trip(api: AgentAPI, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    assert run(capsys, "kv", "export") == (0, "[]\n", "")
    run(capsys, "kv", "put", "app/config", "hello")
    run(capsys, "kv", "put", "-flags=7", "app/bin", "\x00\x01")
    code, out, _ = run(capsys, "kv", "export", "app/")
    assert code == 0
    assert out.startswith('[\n\t{\n\t\t"key": "app/bin",\n\t\t"flags": 7,\n\t\t"value": ')
    exported = json.loads(out)
    assert exported[1] == {"key": "app/config", "flags": 0, "value": "aGVsbG8="}
    (tmp_path / "e.json").write_text(out)
    run(capsys, "kv", "delete", "-recurse", "app")
    assert run(capsys, "kv", "import", f"@{tmp_path / 'e.json'}") == (
        0, "Imported: app/bin\nImported: app/config\n", "")
    assert run(capsys, "kv", "export", "app/")[1] == out
    assert run(capsys, "kv", "import", "not json")[2].startswith("Cannot unmarshal data: ")
    (tmp_path / "deep.json").write_text("[" * 100_000)  # deeper than Python's recursion limit
    assert run(capsys, "kv", "import", f"@{tmp_path / 'deep.json'}") == (
        1, "", "Cannot unmarshal data: JSON nested too deeply\n")
    bad = json.dumps([{"key": "k", "flags": 0, "value": "!!"}])
    assert run(capsys, "kv", "import", bad)[2].startswith(
        "Error base 64 decoding value for key k: ")
    assert run(capsys, "kv", "import") == (1, "", "Error! Missing DATA argument\n")
    literal = json.dumps([{"key": "lit", "flags": 0,
                           "value": base64.b64encode(b"x").decode()}])
    assert run(capsys, "kv", "import", literal) == (0, "Imported: lit\n", "")


# -- catalog -------------------------------------------------------------------------------------


def test_catalog_datacenters_nodes_services(api: AgentAPI,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "catalog", "nodes") == (
        0, "", "No nodes match the given query - try expanding your search.\n")
    assert run(capsys, "catalog", "services") == (
        0, "", "No services match the given query - try expanding your search.\n")
    register(api, "web-1", "5e6f7a8b-1111-2222-3333-444455556666",
             {"web": ["v2"], "redis": ["v1", "primary"]}, {"rack": "r1"})
    register(api, "consul-server-1", "0f3c5a1e-8d2b-4c7a-9e61-2b7d4c9a1f00", {"consul": []})
    assert run(capsys, "catalog", "datacenters") == (0, "dc1\n", "")
    assert run(capsys, "catalog", "nodes")[1].splitlines() == [
        "Node             ID        Address    DC",
        "consul-server-1  0f3c5a1e  10.0.0.21  dc1",
        "web-1            5e6f7a8b  10.0.0.21  dc1",
    ]
    detailed = run(capsys, "catalog", "nodes", "-detailed")[1].splitlines()
    assert detailed[0].split() == ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
    assert re.split(r"\s{2,}", detailed[2]) == [
        "web-1", "5e6f7a8b-1111-2222-3333-444455556666", "10.0.0.21", "dc1", "lan=10.0.0.21",
        "rack=r1"]
    assert run(capsys, "catalog", "nodes", "-service=redis")[1].splitlines()[1].startswith(
        "web-1")
    assert run(capsys, "catalog", "nodes", "-node-meta=rack=r1")[1].count("\n") == 2
    assert run(capsys, "catalog", "services") == (0, "consul\nredis\nweb\n", "")
    assert run(capsys, "catalog", "services", "-tags")[1] == (
        "consul\nredis       primary,v1\nweb         v2\n")
    assert run(capsys, "catalog", "services", "-node=web-1") == (0, "redis\nweb\n", "")
    assert run(capsys, "catalog", "services", "-node=nobody")[0] == 0
    assert run(capsys, "catalog", "nodes", "extra") == (
        1, "", "Too many arguments (expected 0, got 1)\n")


def test_catalog_datacenters_error_exits_1(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
    code, out, err = run(capsys, "catalog", "datacenters")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        'Error listing datacenters: Get "http://127.0.0.1:1/v1/catalog/datacenters": '
        "dial tcp 127.0.0.1:1: connect: connection refused",
        "No datacenters found",
    ]


# -- client flags ----------------------------------------------------------------------------------


def test_flags_win_over_environment_and_wanfed_over_consul(
    api: AgentAPI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "consul-env:1")
    run(capsys, "kv", "get", "-recurse", "x")
    assert api.requests[-1].url == "http://consul-env:1/v1/kv/x?recurse"
    monkeypatch.setenv("WANFED_HTTP_ADDR", "https://wanfed-env:2")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "t-env")
    run(capsys, "kv", "get", "-recurse", "x")
    assert api.requests[-1].url.startswith("https://wanfed-env:2/")
    assert api.requests[-1].headers["X-Consul-Token"] == "t-env"
    run(capsys, "kv", "get", "-http-addr=flag:3", "-token=t-flag", "-datacenter=dc2", "-stale",
        "-recurse", "x")
    last = api.requests[-1]
    assert last.url == "http://flag:3/v1/kv/x?recurse&dc=dc2&stale"
    assert last.headers["X-Consul-Token"] == "t-flag"
    token_file = tmp_path / "tok"
    token_file.write_text("t-file\n")
    run(capsys, "kv", "get", "-token=t-flag", f"-token-file={token_file}", "-recurse", "x")
    assert api.requests[-1].headers["X-Consul-Token"] == "t-file"
    code, _, err = run(capsys, "kv", "get", "-http-addr=unix:///x", "k")
    assert (code, err) == (1, "Unknown protocol scheme: unix\n")
    code, _, err = run(capsys, "kv", "get", f"-token-file={tmp_path / 'none'}", "k")
    assert code == 1 and err.startswith("Error loading token file: ")


def test_flag_errors_exit_1(api: AgentAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kv", "get", "-bogus", "k"]) == 1
    assert main(["catalog", "nodes", "-detailed=x"]) == 1
    assert main(["kv", "put", "-flags=x", "k"]) == 1
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["kv", "get", "-h"])
    assert exc.value.code == 0


def test_columnize_and_tabwrite() -> None:
    assert columnize([["Node", "ID"], ["consul-server-1", " x "], ["a", ""]]) == (
        "Node             ID\nconsul-server-1  x\na")
    assert tabwrite([["Key", "v"], ["CreateIndex", "42"]]) == (
        "Key              v\nCreateIndex      42")
