# -*- test-case-name: tests.unit.gossip -*-
"""serf user events and queries: sending, receiving, filters, responses and relays."""

from __future__ import annotations

import math
import re

import msgpack

from wanfedtx.hostport import format_host

from .. import wire
from ..errors import GossipError, WireError
from ..interfaces import Address
from ..memberlist import (
    ip_bytes,
    ip_string,
)
from .base import SerfBase, log
from .events import Query, QueryResponse, UserEvent
from .messages import (
    EVENT_BUFFER,
    INTERNAL_QUERY_PREFIX,
    QUERY_BUFFER,
    QUERY_FLAG_ACK,
    QUERY_FLAG_NO_BROADCAST,
    USER_EVENT_SIZE_LIMIT,
    QueryMsg,
    QueryResponseMsg,
    UserEventMsg,
)


class QueriesMixin(SerfBase):
    def user_event(self, name: str, payload: bytes, coalesce: bool = False) -> None:
        if len(name) + len(payload) > USER_EVENT_SIZE_LIMIT:
            raise GossipError(
                f"user event exceeds configured limit of {USER_EVENT_SIZE_LIMIT} bytes before "
                "encoding"
            )
        ltime = self.event_clock.time()
        self.event_clock.increment()
        msg = UserEventMsg(ltime, name, payload, coalesce)
        self._handle_user_event(msg)
        self.event_broadcasts.queue(msg.encode())

    def default_query_timeout(self) -> float:
        n = self.memberlist.num_alive()
        return (
            self.config.memberlist.gossip_interval
            * self.config.query_timeout_mult
            * math.ceil(math.log10(n + 1))
        )

    def query(
        self, name: str, payload: bytes, request_ack: bool = True, timeout: float | None = None
    ) -> QueryResponse:
        """Broadcast a query; the returned object collects acks and responses until the deadline."""
        timeout = timeout or self.default_query_timeout()
        ltime = self.query_clock.time()
        self.query_clock.increment()
        qid = self.rng.getrandbits(32)
        me = self.memberlist.local_node()

        q = QueryMsg(
            ltime,
            qid,
            ip_bytes(me.addr),
            me.port,
            self.name,
            QUERY_FLAG_ACK if request_ack else 0,
            0,
            int(timeout * 1e9),
            name,
            payload,
        )
        resp = QueryResponse(qid, ltime, self.clock.seconds() + timeout)
        self.queries[ltime] = resp

        def close() -> None:
            self.queries.pop(ltime, None)
            if not resp.finished.called:
                resp.finished.callback(None)

        self.clock.callLater(timeout, close)
        self._handle_query(q)
        self.query_broadcasts.queue(q.encode())
        return resp

    def _handle_user_event(self, msg: UserEventMsg) -> bool:
        self.event_clock.witness(msg.ltime)
        if msg.ltime < self.event_min_time:
            return False
        cur = self.event_clock.time()
        if cur > EVENT_BUFFER and msg.ltime < cur - EVENT_BUFFER:
            log.warn(
                "serf: received old event {name} from time {lt} (current: {cur})",
                name=msg.name,
                lt=msg.ltime,
                cur=cur,
            )
            return False
        idx = msg.ltime % EVENT_BUFFER
        seen = self.event_buffer[idx]
        item = (msg.name, msg.payload)
        if seen is not None and seen[0] == msg.ltime:
            if item in seen[1]:
                return False
            seen[1].append(item)
        else:
            self.event_buffer[idx] = (msg.ltime, [item])
        self.on_event(UserEvent(msg.ltime, msg.name, msg.payload, msg.cc))
        return True

    def _handle_query(self, q: QueryMsg) -> bool:
        self.query_clock.witness(q.ltime)
        cur = self.query_clock.time()
        if cur > QUERY_BUFFER and q.ltime < cur - QUERY_BUFFER:
            return False
        idx = q.ltime % QUERY_BUFFER
        seen = self.query_buffer[idx]
        if seen is not None and seen[0] == q.ltime:
            if q.id in seen[1]:
                return False
            seen[1].add(q.id)
        else:
            self.query_buffer[idx] = (q.ltime, {q.id})
        rebroadcast = not (q.flags & QUERY_FLAG_NO_BROADCAST)
        if not self._should_process(q):
            return rebroadcast
        reply_to = Address(f"{format_host(ip_string(q.addr))}:{q.port}", q.source_node)
        if q.flags & QUERY_FLAG_ACK:
            ack = QueryResponseMsg(q.ltime, q.id, self.name, QUERY_FLAG_ACK)
            self._send_response(reply_to, ack)

        def respond(payload: bytes) -> None:
            self._send_response(reply_to, QueryResponseMsg(q.ltime, q.id, self.name, 0, payload))

        if q.name.startswith(INTERNAL_QUERY_PREFIX):
            # _serf_ping needs only the ack; other internal queries (conflict, keys) unsupported.
            return rebroadcast
        self.on_event(
            Query(q.ltime, q.name, q.payload, self.clock.seconds() + q.timeout_ns / 1e9, respond)
        )
        return rebroadcast

    def _send_response(self, to: Address, msg: QueryResponseMsg) -> None:
        if to.name == self.name:
            self._handle_query_response(msg)
            return
        try:
            self.memberlist.send_to_address(to, msg.encode())
        except GossipError as exc:
            log.warn("serf: failed to send query response: {error}", error=str(exc))

    def _should_process(self, q: QueryMsg) -> bool:
        for f in q.filters:
            if not f:
                return False
            try:
                obj, _ = wire.unpack_one(f[1:])
            except WireError:
                return False
            if f[0] == 0:
                names = [wire.go_str(x, "filter") for x in obj] if isinstance(obj, list) else []
                if self.name not in names:
                    return False
            elif f[0] == 1:
                m = wire.as_map(obj, "filterTag")
                tag = wire.go_str(m.get(b"Tag"), "Tag")
                expr = wire.go_str(m.get(b"Expr"), "Expr")
                val = self.config.tags.get(tag)
                if val is None or re.search(expr, val) is None:
                    return False
            else:
                return False
        return True

    def _handle_query_response(self, r: QueryResponseMsg) -> None:
        q = self.queries.get(r.ltime)
        if q is None or q.id != r.id or self.clock.seconds() > q.deadline:
            return
        if r.flags & QUERY_FLAG_ACK:
            if r.from_ not in q.acks:
                q.acks.append(r.from_)
        elif r.from_ not in q.responses:
            q.responses[r.from_] = r.payload

    def _handle_relay(self, body: bytes) -> None:
        # sized to the message: the default buffer is 1 MiB, an mmap per relayed response
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False,
                                    max_buffer_size=len(body) + 16)
        unpacker.feed(body)
        try:
            header = unpacker.unpack()
        except Exception as exc:
            raise WireError(f"bad relay header: {exc}") from None
        h = wire.as_map(header, "relayHeader")
        dest = wire.as_map(h.get(b"DestAddr") or {}, "DestAddr")
        ip = ip_string(wire.go_bytes(dest.get(b"IP"), "IP"))
        port = wire.go_int(dest.get(b"Port"), "Port", (0, 65535))
        name = wire.go_str(h.get(b"DestName"), "DestName")
        rest = body[unpacker.tell() :]
        if ip and port and rest:
            self.memberlist.send_to_address(Address(f"{format_host(ip)}:{port}", name), rest)
