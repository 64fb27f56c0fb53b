# -*- test-case-name: tests.unit.gossip.test_gossip_pools,tests.unit.gossip.test_gossip_serf -*-
"""Serf 0.9.4-compatible layer over memberlist: tags, Lamport clocks, intents, events, queries.

Serf messages travel as memberlist user messages (type 8) whose first byte is the serf type:
0 leave intent, 1 join intent, 2 push/pull state, 3 user
event, 4 query, 5 query response, 9 relay. Node meta is ``0xff`` + msgpack ``map[string]string``.
Member states: alive, leaving, left, failed; failed and left members are reaped after
``reconnect_timeout`` / ``tombstone_timeout``. A graceful ``leave`` sends the leave intent first,
then memberlist's leave, so peers report *left* rather than *failed*.

Modules: ``messages`` (codec, tag meta), ``events`` (clocks, members, events, query
collectors), ``base`` (``SerfConfig``, node state), ``intents`` (join/leave intents, member
notifications, reconnect, reaping), ``queries`` (user events, queries, relays), ``core``
(``Serf``: lifecycle, memberlist delegate).
"""

from .base import SerfConfig, log
from .core import Serf
from .events import (
    Event,
    LamportClock,
    Member,
    MemberEvent,
    Query,
    QueryResponse,
    UserEvent,
)
from .messages import (
    EVENT_BUFFER,
    INTERNAL_QUERY_PREFIX,
    QUERY_BUFFER,
    QUERY_FLAG_ACK,
    QUERY_FLAG_NO_BROADCAST,
    SERF_PROTOCOL_MAX,
    SERF_PROTOCOL_MIN,
    SERF_PROTOCOL_VERSION,
    TAG_MAGIC,
    USER_EVENT_SIZE_LIMIT,
    JoinIntent,
    LeaveIntent,
    MemberStatus,
    MsgType,
    PushPullState,
    QueryMsg,
    QueryResponseMsg,
    UserEventMsg,
    decode_tags,
    encode_tags,
)

__all__ = [
    "EVENT_BUFFER",
    "INTERNAL_QUERY_PREFIX",
    "QUERY_BUFFER",
    "QUERY_FLAG_ACK",
    "QUERY_FLAG_NO_BROADCAST",
    "SERF_PROTOCOL_MAX",
    "SERF_PROTOCOL_MIN",
    "SERF_PROTOCOL_VERSION",
    "TAG_MAGIC",
    "USER_EVENT_SIZE_LIMIT",
    "Event",
    "JoinIntent",
    "LamportClock",
    "LeaveIntent",
    "Member",
    "MemberEvent",
    "MemberStatus",
    "MsgType",
    "PushPullState",
    "Query",
    "QueryMsg",
    "QueryResponse",
    "QueryResponseMsg",
    "Serf",
    "SerfConfig",
    "UserEvent",
    "UserEventMsg",
    "decode_tags",
    "encode_tags",
    "log",
]
