"""``wanfed snapshot save|restore|inspect`` and ``/v1/snapshot`` in memory: the CLI talks to the
real route family over a real snapshot server (FSM, local consensus) through StubTreq."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from cli_support import serve
from twisted.internet import task

from wanfedtx.cli import httpapi
from wanfedtx.cli.main import main
from wanfedtx.fsm.commands import KVS_SET, MessageType, encode
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.http.snapshot import SnapshotRoutes
from wanfedtx.snapshot.server import SnapshotServer


class _Resolver:
    enabled = True
    datacenter = "dc1"

    def authorizer(self, secret: str, now: float) -> Any:
        class A:
            def acl_write(self) -> bool:
                return secret == "mgmt"
        return A()


def _agent(monkeypatch: pytest.MonkeyPatch, resolver: Any = None) -> SnapshotServer:
    for name in ("HTTP_ADDR", "HTTP_TOKEN", "HTTP_TOKEN_FILE", "HTTP_SSL"):
        monkeypatch.delenv(f"CONSUL_{name}", raising=False)
        monkeypatch.delenv(f"WANFED_{name}", raising=False)
    fsm = FSM()
    server = SnapshotServer(datacenter="dc1", fsm=fsm,
                            consensus=LocalConsensus(fsm, "127.0.0.1:8300"), forward=None,
                            resolver=resolver, clock=task.Clock(), max_restore_bytes=4 << 20)
    server.register_fsm()
    resource = SnapshotRoutes("dc1", server.handle).app.resource()
    monkeypatch.setattr(httpapi, "TRANSPORT", [lambda req, stream: serve(resource, req, stream)])
    return server


def _put(server: SnapshotServer, key: str, value: bytes) -> None:
    server.consensus.apply(encode(MessageType.KVS,
                                  {"Op": KVS_SET, "DirEnt": {"Key": key, "Value": value}}))


def _keys(server: SnapshotServer) -> dict[str, bytes]:
    return {r["Key"]: r["Value"] for r in server.fsm.state.tables["kvs"].all()}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_save_inspect_restore(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    server = _agent(monkeypatch)
    _put(server, "a", b"1")
    _put(server, "b", b"2")
    path = tmp_path / "backup.snap"
    code, out, err = run(capsys, "snapshot", "save", str(path))
    assert (code, out, err) == (0, "Saved and verified snapshot to index 2\n", "")
    assert not (tmp_path / "backup.snap.unverified").exists()
    code, out, err = run(capsys, "snapshot", "inspect", str(path))
    assert code == 0 and err == ""
    rows = [line.split() for line in out.splitlines()]
    assert [r[0] for r in rows] == ["ID", "Size", "Index", "Term", "Version"]
    assert rows[2][1] == "2" and rows[4][1] == "1"
    assert out.splitlines()[1].startswith("Size         ")

    _put(server, "c", b"3")
    code, out, err = run(capsys, "snapshot", "restore", str(path))
    assert (code, out, err) == (0, "Restored snapshot\n", "")
    assert _keys(server) == {"a": b"1", "b": b"2"}


def test_corrupt_file_is_refused_by_inspect_and_restore(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    server = _agent(monkeypatch)
    _put(server, "a", b"1")
    path = tmp_path / "s.snap"
    assert run(capsys, "snapshot", "save", str(path))[0] == 0
    raw = bytearray(gzip.decompress(path.read_bytes()))
    at = raw.index(b"wanfedtx-state")
    raw[at] ^= 1  # inside state.bin
    path.write_bytes(gzip.compress(bytes(raw)))
    _put(server, "b", b"2")
    code, out, err = run(capsys, "snapshot", "inspect", str(path))
    assert (code, out) == (1, "")
    assert err == ('Error verifying snapshot: failed to read snapshot file: failed checking '
                   'integrity of snapshot: hash check failed for "state.bin"\n')
    code, out, err = run(capsys, "snapshot", "restore", str(path))
    assert (code, out) == (1, "")
    assert err == ('Error restoring snapshot: Unexpected response code: 500 (failed to read '
                   'snapshot file: failed checking integrity of snapshot: hash check failed '
                   'for "state.bin")\n')
    assert _keys(server) == {"a": b"1", "b": b"2"}


def test_arguments_and_acls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    _agent(monkeypatch, _Resolver())
    assert run(capsys, "snapshot", "save") == (1, "", "Missing FILE argument\n")
    assert run(capsys, "snapshot", "save", "a", "b") == (
        1, "", "Too many arguments (expected 1, got 2)\n")
    code, _, err = run(capsys, "snapshot", "save", str(tmp_path / "x"))
    assert (code, err) == (
        1, "Error saving snapshot: Unexpected response code: 403 (Permission denied)\n")
    code, out, _ = run(capsys, "snapshot", "save", "-token=mgmt", str(tmp_path / "x"))
    assert code == 0 and out.startswith("Saved and verified snapshot to index ")
    code, _, err = run(capsys, "snapshot", "inspect", str(tmp_path / "missing"))
    assert code == 1 and err.startswith("Error opening snapshot file: ")
    code, _, err = run(capsys, "snapshot", "restore", "-token=mgmt", "-stale",
                       str(tmp_path / "x"))
    assert (code, err) == (1, "Error restoring snapshot: Unexpected response code: 500 "
                              "(stale not allowed for restore)\n")


def test_http_headers_and_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _agent(monkeypatch)
    _put(server, "a", b"1")
    resp = httpapi.TRANSPORT[0](httpapi.Request("GET", "http://h/v1/snapshot"), False)
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/x-gzip"
    assert resp.headers["x-consul-index"] == "1"
    assert resp.headers["x-consul-knownleader"] == "true"
    assert resp.headers["x-consul-lastcontact"] == "0"
    resp = httpapi.TRANSPORT[0](httpapi.Request("POST", "http://h/v1/snapshot"), False)
    assert resp.status == 405
    resp = httpapi.TRANSPORT[0](httpapi.Request("PUT", "http://h/v1/snapshot", b"junk"), False)
    assert resp.status == 500 and resp.body.startswith(b"failed to decompress snapshot: ")


def test_restore_body_cap_is_the_raft_entry_limit() -> None:
    from wanfedtx.http.limits import HTTPLimits

    cap = HTTPLimits(snapshot_max_body=1234).body_cap(b"PUT", b"/v1/snapshot?dc=x")
    assert (cap.limit, cap.key) == (1234, "limits.raft_max_entry_size")
    assert HTTPLimits().body_cap(b"PUT", b"/v1/snapshot").limit == 4 * 1024 * 1024
