"""The snapshot dispatch and the ``consul/rpc-snapshot`` connection, with in-memory consensus
and fake transports: save/restore round trip, corrupt archives refused with nothing changed,
ACLs, forwarding, and truncated streams closed with one log line."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from log_support import captured_logs
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.logger import Logger

from wanfedtx.fsm.commands import KVS_SET, MessageType, encode
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.interfaces import ConnectionInfo
from wanfedtx.snapshot.archive import read_archive
from wanfedtx.snapshot.server import SnapshotHandler, SnapshotServer
from wanfedtx.snapshot.stream import OP_RESTORE, OP_SAVE, encode_request


class _Authz:
    def __init__(self, write: bool) -> None:
        self.write = write

    def acl_write(self) -> bool:
        return self.write


class _Resolver:
    enabled = True
    datacenter = "dc1"

    def authorizer(self, secret: str, now: float) -> _Authz:
        return _Authz(secret == "mgmt")


class _Forward:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def to_leader(self, header: dict[str, Any], archive: bytes) -> Deferred[Any]:
        self.calls.append(("leader", "", header))
        return succeed(({"Error": "", "Index": 7}, b"from-leader"))

    def to_dc(self, dc: str, header: dict[str, Any], archive: bytes) -> Deferred[Any]:
        self.calls.append(("dc", dc, header))
        return succeed(({"Error": "", "Index": 9}, b"from-" + dc.encode()))


class _Follower(LocalConsensus):
    def is_leader(self) -> bool:
        return False

    def leader_address(self) -> str:
        return "10.0.0.1:8300"


def _server(fsm: FSM | None = None, resolver: Any = None, forward: Any = None,
            consensus: Any = None, max_restore: int = 4 << 20) -> SnapshotServer:
    fsm = fsm if fsm is not None else FSM()
    s = SnapshotServer(datacenter="dc1", fsm=fsm,
                       consensus=consensus or LocalConsensus(fsm, "127.0.0.1:8300"),
                       forward=forward, resolver=resolver, clock=task.Clock(),
                       max_restore_bytes=max_restore)
    s.register_fsm()
    return s


def _put(server: SnapshotServer, key: str, value: bytes) -> None:
    cmd = encode(MessageType.KVS, {"Op": KVS_SET, "DirEnt": {"Key": key, "Value": value}})
    server.consensus.apply(cmd)


def _keys(server: SnapshotServer) -> dict[str, bytes]:
    return {r["Key"]: r["Value"] for r in server.fsm.state.tables["kvs"].all()}


def _call(server: SnapshotServer, op: int, archive: bytes = b"", **extra: Any) -> Any:
    header = {"Datacenter": "dc1", "Token": "", "AllowStale": False, "Op": op, **extra}
    results: list[Any] = []
    server.handle(header, archive).addCallback(results.append)
    assert results, "the dispatch did not finish"
    return results[0]


def test_save_then_restore_into_another_datacenter_state() -> None:
    src = _server()
    for i in range(50):
        _put(src, f"k/{i}", f"v{i}".encode())
    reply, archive = _call(src, OP_SAVE)
    assert reply["Error"] == "" and reply["KnownLeader"] is True
    meta, _ = read_archive(archive)
    assert reply["Index"] == meta.index == src.fsm.last_applied
    _put(src, "after", b"x")

    dst = _server()
    _put(dst, "other", b"old")
    for i in range(60):  # the destination's log is ahead: indexes are kept as saved
        _put(dst, f"pad/{i}", b"")
    reply, _ = _call(dst, OP_RESTORE, archive)
    assert reply["Error"] == ""
    assert _keys(dst) == {f"k/{i}": f"v{i}".encode() for i in range(50)}
    assert dst.fsm.state.tables["kvs"].get("k/0")["ModifyIndex"] == 1


def test_restore_into_a_younger_log_lowers_indexes() -> None:
    src = _server()
    for i in range(30):
        _put(src, f"k/{i}", b"v")
    _, archive = _call(src, OP_SAVE)
    dst = _server()
    reply, _ = _call(dst, OP_RESTORE, archive)
    assert reply["Error"] == ""
    restore_index = dst.fsm.last_applied
    rows = dst.fsm.state.tables["kvs"].all()
    assert len(rows) == 30
    assert max(r["ModifyIndex"] for r in rows) <= restore_index
    assert dst.fsm.state.max_index("kvs") <= restore_index


def test_corrupt_archive_is_refused_and_nothing_changes() -> None:
    src = _server()
    _put(src, "a", b"1")
    _, archive = _call(src, OP_SAVE)
    dst = _server()
    _put(dst, "keep", b"me")
    before = dst.fsm.last_applied
    bad = bytearray(archive)
    bad[len(bad) // 2] ^= 0x55
    reply, _ = _call(dst, OP_RESTORE, bytes(bad))
    assert reply["Error"].startswith(("failed to read snapshot file", "failed to decompress"))
    assert _keys(dst) == {"keep": b"me"} and dst.fsm.last_applied == before


def test_checksum_error_text() -> None:
    import gzip
    import io
    import tarfile

    src = _server()
    _put(src, "a", b"1")
    _, archive = _call(src, OP_SAVE)
    raw = io.BytesIO(gzip.decompress(archive))
    out = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="r:") as tin:
        members = [(m, tin.extractfile(m).read()) for m in tin.getmembers()]  # type: ignore[union-attr]
    for m, data in members:
        if m.name == "state.bin":
            data = data[:-1] + bytes([data[-1] ^ 1])
        out.write(m.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * ((-len(data)) % 512))
    out.write(b"\0" * 1024)
    dst = _server()
    reply, _ = _call(dst, OP_RESTORE, gzip.compress(out.getvalue()))
    assert reply["Error"] == ('failed to read snapshot file: failed checking integrity of '
                              'snapshot: hash check failed for "state.bin"')
    assert _keys(dst) == {}


def test_stale_restore_and_acls() -> None:
    s = _server(resolver=_Resolver())
    assert _call(s, OP_SAVE, Token="nope")[0]["Error"] == "Permission denied"
    assert _call(s, OP_SAVE, Token="mgmt")[0]["Error"] == ""
    reply, _ = _call(s, OP_RESTORE, b"", Token="mgmt", AllowStale=True)
    assert reply["Error"] == "stale not allowed for restore"
    assert _call(s, 9, Token="mgmt")[0]["Error"] == "unrecognized snapshot op 9"


def test_restore_larger_than_one_raft_entry_is_refused() -> None:
    src = _server()
    import os
    for i in range(20):
        _put(src, f"big/{i}", os.urandom(2000))
    _, archive = _call(src, OP_SAVE)
    dst = _server(max_restore=1000)
    reply, _ = _call(dst, OP_RESTORE, archive)
    assert "limits.raft_max_entry_size" in reply["Error"]
    assert _keys(dst) == {}


def test_forwarding_to_another_dc_and_to_the_leader() -> None:
    fwd = _Forward()
    fsm = FSM()
    s = _server(fsm=fsm, forward=fwd, consensus=_Follower(fsm, "x"))
    assert _call(s, OP_SAVE, Datacenter="dc2") == ({"Error": "", "Index": 9}, b"from-dc2")
    assert _call(s, OP_SAVE) == ({"Error": "", "Index": 7}, b"from-leader")
    reply, archive = _call(s, OP_SAVE, AllowStale=True)  # a follower answers a stale save
    assert reply["Error"] == "" and reply["KnownLeader"] is True and read_archive(archive)
    assert [c[:2] for c in fwd.calls] == [("dc", "dc2"), ("leader", "")]
    lone = _server()
    assert _call(lone, OP_SAVE, Datacenter="dc9")[0]["Error"] == "No path to datacenter"


# -- the RPC-port connection ------------------------------------------------------------------


def _conn(server: SnapshotServer, clock: task.Clock) -> tuple[Any, StringTransport]:
    handler = SnapshotHandler(server, RateLimitedLog(Logger(), clock), max_archive=1 << 20)
    transport = StringTransport()
    proto = handler.build_protocol(ConnectionInfo(transport, 5, None, tls=False))
    proto.makeConnection(transport)
    return proto, transport


def _header(op: int) -> dict[str, Any]:
    return {"Datacenter": "dc1", "Token": "", "AllowStale": False, "Op": op}


def _reply(transport: StringTransport) -> tuple[dict[str, Any], bytes]:
    unpacker = msgpack.Unpacker(raw=False)
    data = transport.value()
    unpacker.feed(data)
    reply = unpacker.unpack()
    return reply, data[unpacker.tell():]


def test_connection_save_with_half_close() -> None:
    clock = task.Clock()
    s = _server()
    _put(s, "a", b"1")
    proto, transport = _conn(s, clock)
    proto.dataReceived(encode_request(_header(OP_SAVE)))
    reply, archive = _reply(transport)
    assert reply["Error"] == "" and transport.disconnecting
    assert read_archive(archive)[0].index == reply["Index"]


def test_connection_restore_ends_at_the_archive_end_or_half_close() -> None:
    clock = task.Clock()
    src = _server()
    _put(src, "a", b"1")
    _, archive = _call(src, OP_SAVE)
    for half_close in (False, True):
        dst = _server()
        proto, transport = _conn(dst, clock)
        data = encode_request(_header(OP_RESTORE), archive)
        for i in range(0, len(data), 7):
            proto.dataReceived(data[i : i + 7])
        if half_close:
            proto.readConnectionLost()
        reply, rest = _reply(transport)
        assert reply["Error"] == "" and rest == b"" and transport.disconnecting
        assert _keys(dst) == {"a": b"1"}


def _stream_errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if "Snapshot RPC error" in e.get("log_format", "")]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_truncated_streams_are_closed_with_one_log_line(data: st.DataObject) -> None:
    clock = task.Clock()
    src = _server()
    _put(src, "a", b"1")
    _, archive = _call(src, OP_SAVE)
    full = encode_request(_header(OP_RESTORE), archive)
    cut = data.draw(st.integers(0, len(full) - 1))
    how = data.draw(st.sampled_from(["close", "half-close", "timeout"]))
    dst = _server()
    _put(dst, "keep", b"me")
    clock = dst.clock  # the connection's idle timer runs on the server's clock
    with captured_logs() as events:
        proto, transport = _conn(dst, clock)
        if cut:
            proto.dataReceived(full[:cut])
        if how == "close":
            transport.loseConnection()
            proto.connectionLost()
        elif how == "half-close":
            proto.readConnectionLost()
            assert transport.disconnecting
            answered = transport.value()
            proto.connectionLost()
            if cut >= len(full) - len(archive):  # header complete: answered with its error
                reply, rest = _reply(transport)
                assert reply["Error"].startswith(("failed to decompress snapshot",
                                                  "failed to read snapshot file"))
                assert rest == b""
                transport.clear()
            else:
                assert answered == b""
        else:
            clock.advance(31)
            assert transport.disconnecting or transport.disconnected
            proto.connectionLost()
    lines = _stream_errors(events)
    assert len(lines) == 1, events
    assert lines[0]["peer"] and lines[0]["error"]
    assert _keys(dst) == {"keep": b"me"}
    assert transport.value() == b""  # nothing answered to a truncated request


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
@example(b"\x81\x90\x00")  # a header map keyed by an array (found by a long fuzz run)
@example(b"\x81\x80\x00")  # keyed by a map
def test_garbage_never_raises(data: bytes) -> None:
    clock = task.Clock()
    dst = _server()
    with captured_logs():
        proto, _transport = _conn(dst, clock)
        proto.dataReceived(data)
        proto.readConnectionLost()
        proto.connectionLost()
    assert _keys(dst) == {}


def test_bad_header_field_types_are_refused() -> None:
    clock = task.Clock()
    for header in ({"Op": "save"}, {"Datacenter": 5}, {"AllowStale": "yes"}, [1, 2]):
        with captured_logs() as events:
            proto, transport = _conn(_server(), clock)
            proto.dataReceived(msgpack.packb(header))
        assert transport.disconnecting and len(_stream_errors(events)) == 1
        proto.connectionLost()


@pytest.mark.parametrize("op", [OP_SAVE])
def test_save_needs_no_half_close(op: int) -> None:
    proto, transport = _conn(_server(), task.Clock())
    proto.dataReceived(encode_request(_header(op)))
    assert _reply(transport)[0]["Error"] == ""


def test_every_table_round_trips_kv_catalog_federation_acl_and_ca() -> None:
    from wanfedtx.state.federation import FederationState

    src = _server()
    st_ = src.fsm.state
    _put(src, "k", b"v")
    with st_.write():  # a catalog node row, as the registration path stores it
        st_.insert("nodes", {"ID": "", "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1",
                             "TaggedAddresses": {}, "Meta": {}, "CreateIndex": 2,
                             "ModifyIndex": 2})
        st_.bump_index("nodes", 2)
    st_.federation_state_set(3, FederationState.from_wire(
        {"Datacenter": "dc2", "MeshGateways": [], "UpdatedAt": "2026-12-06T00:00:00Z"}))
    st_.acl_policy_batch_set(4, [{"ID": "pol", "Name": "p", "Rules": 'acl = "write"'}])
    st_.acl_token_batch_set(5, [{"AccessorID": "acc", "SecretID": "sec", "Policies": []}])
    assert st_.ca_roots_set_cas(6, 0, [{"ID": "aa:bb", "Active": True, "RootCert": "PEM"}])
    assert st_.ca_config_set(7, {"Provider": "consul", "Config": {}, "ClusterID": "cid"})
    st_.ca_provider_state_set(8, {"ID": "prov", "PrivateKey": "KEY", "RootCert": "PEM"})
    src.fsm.last_applied = 8
    _, archive = _call(src, OP_SAVE)

    dst = _server()
    for i in range(20):  # a log ahead of the snapshot: indexes are restored as saved
        _put(dst, f"pad/{i}", b"")
    assert _call(dst, OP_RESTORE, archive)[0]["Error"] == ""

    def tables(s: SnapshotServer) -> dict[str, list[Any]]:
        return {name: sorted(repr(r) for r in t.all())
                for name, t in s.fsm.state.tables.items()}

    assert tables(dst) == tables(src)
    for name in ("kvs", "nodes", "federation-states", "acl-policies", "acl-tokens",
                 "connect-ca-roots", "connect-ca-config", "connect-ca-builtin"):
        assert dst.fsm.state.tables[name].all(), name
    assert dst.fsm.state.acl_token_get_by_secret(None, "sec")[1] is not None
    assert dst.fsm.state.ca_provider_state("prov")["PrivateKey"] == "KEY"  # type: ignore[index]
