# -*- test-case-name: tests.unit.fsm.test_fsm_machine -*-
"""Raft command types and their encoding: one type byte, then a msgpack body.

Numbers are the reference's ``structs.MessageType`` values; only the ones this FSM applies
(or reserves) are listed. A type with the high bit (``IGNORE_UNKNOWN_FLAG``) set may be skipped
by an FSM that does not know it, as in the reference.
"""

from __future__ import annotations

import enum
from typing import Any

import msgpack

from wanfedtx.fsm.errors import CommandDecodeError
from wanfedtx.packing import DECODE_ERRORS, pack


class MessageType(enum.IntEnum):
    REGISTER = 0
    DEREGISTER = 1
    KVS = 2
    SESSION = 3
    ACL = 4
    TOMBSTONE = 5
    COORDINATE_BATCH_UPDATE = 6
    PREPARED_QUERY = 7
    TXN = 8
    AUTOPILOT = 9
    AREA = 10
    ACL_BOOTSTRAP = 11
    INTENTION = 12
    CONNECT_CA = 13
    CONNECT_CA_PROVIDER_STATE = 14
    CONNECT_CA_CONFIG = 15
    INDEX = 16
    ACL_TOKEN_SET = 17
    ACL_TOKEN_DELETE = 18
    ACL_POLICY_SET = 19
    ACL_POLICY_DELETE = 20
    CONNECT_CA_LEAF = 21
    CONFIG_ENTRY = 22
    ACL_ROLE_SET = 23
    ACL_ROLE_DELETE = 24
    ACL_BINDING_RULE_SET = 25
    ACL_BINDING_RULE_DELETE = 26
    ACL_AUTH_METHOD_SET = 27
    ACL_AUTH_METHOD_DELETE = 28
    CHUNKING_STATE = 29
    FEDERATION_STATE = 30


IGNORE_UNKNOWN_FLAG = 128

# KV operations (``api.KVOp`` values).
KVS_SET = "set"
KVS_DELETE = "delete"
KVS_DELETE_CAS = "delete-cas"
KVS_DELETE_TREE = "delete-tree"
KVS_CAS = "cas"
KVS_LOCK = "lock"
KVS_UNLOCK = "unlock"
KVS_WRITE_OPS = (KVS_SET, KVS_DELETE, KVS_DELETE_CAS, KVS_DELETE_TREE, KVS_CAS)

TOMBSTONE_REAP = "reap"


def encode(msg_type: int, body: Any) -> bytes:
    """``type byte + msgpack(body)``; ``bytes`` values stay binary."""
    return bytes([msg_type]) + pack(body)


def decode(data: bytes) -> tuple[int, Any]:
    if not data:
        raise CommandDecodeError("empty raft command")
    try:
        body = msgpack.unpackb(data[1:], raw=False, strict_map_key=False)
    except DECODE_ERRORS as exc:
        raise CommandDecodeError(f"raft command of type {data[0]} has a bad body: {exc}") from exc
    return data[0], body
