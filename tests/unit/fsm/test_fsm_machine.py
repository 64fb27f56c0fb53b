"""FSM: command encoding, apply into the store, snapshot/restore, LocalConsensus."""

from __future__ import annotations

import pytest

from wanfedtx.catalog.structs import decode_register_request
from wanfedtx.fsm import commands
from wanfedtx.fsm.commands import MessageType, encode
from wanfedtx.fsm.consensus import LocalConsensus
from wanfedtx.fsm.errors import CommandDecodeError, UnknownCommandError
from wanfedtx.fsm.machine import FSM
from wanfedtx.state.errors import MissingServiceError


def test_message_type_numbers_match_reference() -> None:
    assert (MessageType.REGISTER, MessageType.DEREGISTER, MessageType.KVS) == (0, 1, 2)
    assert MessageType.TOMBSTONE == 5
    assert MessageType.CHUNKING_STATE == 29 and MessageType.FEDERATION_STATE == 30


def _register(node: str, service: str) -> bytes:
    req = decode_register_request(
        {"Node": node, "Address": "127.0.0.1", "Service": {"Service": service}}
    )
    return encode(MessageType.REGISTER, req)


def test_apply_register_kvs_deregister() -> None:
    fsm = FSM()
    assert fsm.apply(1, _register("n1", "web")) is None
    kv = {"Op": commands.KVS_SET, "DirEnt": {"Key": "a", "Value": b"\x00\xff", "Flags": 3}}
    assert fsm.apply(2, encode(MessageType.KVS, kv)) is True
    cas = {"Op": commands.KVS_CAS, "DirEnt": {"Key": "a", "Value": b"z", "ModifyIndex": 1}}
    assert fsm.apply(3, encode(MessageType.KVS, cas)) is False
    _, entry = fsm.state.kvs_get(None, "a")
    assert entry is not None and entry["Value"] == b"\x00\xff" and entry["Flags"] == 3
    fsm.apply(4, encode(MessageType.DEREGISTER, {"Node": "n1"}))
    assert fsm.state.list_nodes(None) == (4, [])
    assert fsm.last_applied == 4


def test_refused_write_is_returned_not_raised() -> None:
    fsm = FSM()
    req = decode_register_request(
        {"Node": "n", "Address": "a", "Check": {"CheckID": "c", "ServiceID": "missing"}}
    )
    result = fsm.apply(1, encode(MessageType.REGISTER, req))
    assert isinstance(result, MissingServiceError)


def test_unknown_and_malformed_commands() -> None:
    fsm = FSM()
    with pytest.raises(UnknownCommandError):
        fsm.apply(1, encode(MessageType.SESSION, {}))
    assert fsm.apply(1, encode(MessageType.SESSION | commands.IGNORE_UNKNOWN_FLAG, {})) is None
    with pytest.raises(CommandDecodeError):
        fsm.apply(2, b"\x02\xc1")
    with pytest.raises(CommandDecodeError):
        fsm.apply(2, encode(MessageType.KVS, {"Op": "set"}))
    with pytest.raises(CommandDecodeError):
        fsm.apply(2, b"")
    for key in (b"\x90", b"\x80"):  # a map keyed by an array, by a map: unhashable in Python
        with pytest.raises(CommandDecodeError):
            fsm.apply(2, b"\x02\x81" + key + b"\x00")


def test_snapshot_restore_through_fsm() -> None:
    fsm = FSM()
    fsm.apply(1, _register("n1", "web"))
    fsm.apply(2, encode(MessageType.KVS, {"Op": "set", "DirEnt": {"Key": "k", "Value": b"v"}}))
    other = FSM()
    other.restore(fsm.snapshot(), last_index=2)
    assert other.last_applied == 2
    assert other.state.kvs_get(None, "k")[1] == fsm.state.kvs_get(None, "k")[1]
    assert [n["Node"] for n in other.state.list_nodes(None)[1]] == ["n1"]


def test_local_consensus_assigns_increasing_indexes() -> None:
    c = LocalConsensus(FSM(), "127.0.0.1:8300")
    results: list[object] = []
    c.apply(_register("n1", "web")).addCallback(results.append)
    c.apply(
        encode(
            MessageType.KVS, {"Op": "cas", "DirEnt": {"Key": "k", "Value": b"", "ModifyIndex": 0}}
        )
    ).addCallback(results.append)
    assert results == [(1, None), (2, True)]
    failures: list[object] = []
    c.apply(b"\x7f").addErrback(failures.append)
    assert len(failures) == 1 and c.index == 2
