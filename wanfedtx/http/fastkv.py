# -*- test-case-name: tests.unit.http.test_http_fastkv_diff -*-
"""The KV fast path: ``GET``/``PUT``/``DELETE /v1/kv/<key>`` served without twisted.web's
``Request``, Klein and werkzeug, on the same port as the rest of the API.

Every connection of the agent's HTTP site starts with a :class:`FastChannel`. It buffers what
the client sends and asks the sans-IO parser (:mod:`wanfedtx.http.fastparse`) for the next
request. A plain KV read, write or delete of one key (only ``token``, ``dc``, ``stale``,
``consistent``, ``raw``, ``index`` and ``wait`` on reads, ``flags`` on writes) is served here:
the same RPC (``KVS.Get`` / ``KVS.Apply``, so ACLs, the default token, the raft commit that a
write waits for, the blocking query that a read with ``?index`` parks on and the forwarding of
``?dc=<another datacenter>`` through the mesh gateways are unchanged), the same helpers build
the answer (``wanfedtx.http.common``: status, ``X-Consul-*`` headers, JSON, error texts), and
the response bytes are those twisted.web writes (:mod:`wanfedtx.http.fastanswer`), in one
write. A blocking read waits as a Deferred on its connection (no twisted.web ``Request``
parked with it: a few KiB less per watcher), and the reads one write wakes with the same reply
share one rendering. Anything else (other routes, ``?recurse``, ``?keys``, ``?cas``, chunked
bodies, ``Expect``, bodies over ``limits.kv_max_value_size``, malformed input) hands the
connection, with the bytes still buffered, to the twisted.web
:class:`~wanfedtx.http.channel.APIChannel`, which answers exactly as before. The fast path
takes the connection back when the next bytes arrive while that channel is between requests
(its answer written, nothing buffered or pending: no parked blocking query, no refusal, no
timeout under way) and they may start a fast request.

Requests are served one at a time per connection (pipelined ones wait in the buffer, as
twisted.web does; reading pauses past 16 KiB buffered or while the transport's send buffer is
full; a request's head is parsed once, then its body is only waited for). The bounds are
those of ``APIChannel``: the header deadline (from accept, then from the first byte of each
request until its headers are in; carried over on a hand-over), Twisted's idle timeout
(``Site.timeout``, logged rate-limited), the Site's connections per client. Both timers are
lazy: one pending timer per connection, re-armed when it fires early, instead of a timer armed
and cancelled per request. Each request is logged as the Site logs the others
(``Request finished`` at debug).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from wanfedtx.hostport import address_text
from wanfedtx.http.aclgate import AgentACLGate
from wanfedtx.http.app import API
from wanfedtx.http.channel import APIChannel, api_channel_factory
from wanfedtx.http.common import (
    APIContext,
    IRequest,
    error_reply,
    json_reply,
    log_unexpected,
    query_args,
    text_reply,
    write_args,
)
from wanfedtx.http.fastanswer import Answer, SharedReadRender, as_request
from wanfedtx.http.fastparse import HANDOVER, MAX_HEAD, FastRequest, parse_head
from wanfedtx.http.kv import KVRoutes, uint_arg
from wanfedtx.http.limits import HTTPLimits
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.writenow import write_now

EAGER_READ = 0x4000
"""Bytes buffered behind a request being served before reading pauses (as twisted.web)."""

_shared_render = SharedReadRender()

class FastChannel(Protocol):
    """The agent's HTTP connection: the KV fast path, then ``APIChannel`` (see the module)."""

    # set by the Site's buildProtocol, as on twisted.web's channels
    site: Any = None
    requestFactory: Any = None
    timeOut: float | None = None
    callLater: Callable[..., IDelayedCall]

    abortTimeout = 15
    inner: Any = None

    def __init__(self, ctx: APIContext) -> None:
        self.ctx = ctx
        self.buf = bytearray()
        # the next request once its head has parsed, and where its body starts in buf
        self.pending: tuple[FastRequest, int] | None = None
        self.busy: Deferred[Any] | None = None
        self.serving = False
        self.closing = False
        self.reading_paused = False  # we paused the transport's reading (_sync_reading)
        self.transport_full = False  # the transport asked us to stop producing
        self.header_start: float | None = None
        self.idle_since = 0.0
        self._header_timer: IDelayedCall | None = None
        self._idle_timer: IDelayedCall | None = None
        self._abort_call: IDelayedCall | None = None
        self._looping = False
        self._reading = False  # inside dataReceived: an answer made now is written buffered

    # -- wiring ----------------------------------------------------------------------------

    @property
    def limits(self) -> HTTPLimits:
        """The site's limits, looked up once per connection."""
        limits = self.__dict__.get("_limits")
        if limits is None:
            limits = getattr(self.site, "http_limits", None)
            if not isinstance(limits, HTTPLimits):
                limits = HTTPLimits()
            self.__dict__["_limits"] = limits
        return limits

    def _now(self) -> float:
        seconds = self.__dict__.get("_seconds")
        if seconds is None:
            seconds = getattr(getattr(self.site, "reactor", None), "seconds", None)
            if not callable(seconds):
                seconds = time.time
            self.__dict__["_seconds"] = seconds
        return float(seconds())

    def _peer(self) -> str:
        return address_text(self.transport.getPeer()) if self.transport is not None else "?"

    @property
    def _channel(self) -> APIChannel:
        """The twisted.web channel serving this connection, taking it over if the fast path
        still has it (what code written for twisted.web's channel wrapper reads)."""
        if self.inner is None:
            if self.transport is None or self.closing:
                raise AttributeError("_channel: the connection is closed")
            self.handover()
        channel: APIChannel = self.inner._channel
        return channel

    def connectionMade(self) -> None:
        transport: Any = self.transport
        set_nodelay = getattr(transport, "setTcpNoDelay", None)
        if callable(set_nodelay):
            set_nodelay(True)
        transport.registerProducer(self, True)
        now = self._now()
        self.idle_since = now
        self._arm_idle(self.timeOut)
        self.header_start = now  # the header deadline runs from accept
        self._arm_header(self.limits.read_header_timeout)

    # -- IPushProducer (the transport's send buffer) --------------------------------------

    def pauseProducing(self) -> None:
        self.transport_full = True
        self._sync_reading()

    def resumeProducing(self) -> None:
        self.transport_full = False
        self._sync_reading()

    def _sync_reading(self) -> None:
        """Pause reading exactly while the send buffer is full or too much is buffered behind
        the request being served; pause or resume the transport only when that changes."""
        want = self.transport_full or (self.serving and len(self.buf) > EAGER_READ)
        transport: Any = self.transport
        if want == self.reading_paused or transport is None or self.inner is not None:
            return
        self.reading_paused = want
        if want:
            transport.pauseProducing()
        else:
            transport.resumeProducing()

    def stopProducing(self) -> None:
        pass

    # -- input ---------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._reading = True
        try:
            self._data_received(data)
        finally:
            self._reading = False

    def _data_received(self, data: bytes) -> None:
        if self.inner is not None and not self._take_back(data):
            self.inner.dataReceived(data)
            return
        if self.closing or not data:
            return
        if not self.buf and self.header_start is None and not self.serving:
            self.header_start = self._now()
            self._arm_header(self.limits.read_header_timeout)
        self.buf += data
        if not self.serving:
            self.idle_since = self._now()
            self._advance()
        self._sync_reading()

    def _advance(self) -> None:
        """Serve the buffered requests, one at a time, until one is pending or incomplete."""
        if self._looping:
            return
        self._looping = True
        try:
            while self.buf and not self.serving and self.inner is None and not self.closing:
                req = self._next()
                if req is None:
                    if self.header_start is not None and self.pending is not None:
                        self.header_start = None  # headers in; the body is not covered
                    return
                if not isinstance(req, FastRequest):
                    self.handover()
                    return
                del self.buf[:req.size]
                # A pipelined request's deadline starts once this one is answered (_respond).
                self.header_start = None
                self._serve(req)
        finally:
            self._looping = False

    # -- serving -------------------------------------------------------------------------------

    def _serve(self, req: FastRequest) -> None:
        self.serving = True
        peer = self.transport.getPeer() if self.transport is not None else None
        answer = Answer(req, peer)
        request = as_request(answer)
        try:
            d, raw = self._call(req, request)
        except Exception:
            self._respond(answer, error_reply(request, Failure()))
            return
        self.busy = d
        d.addCallbacks(self._replied, self._failed, callbackArgs=(answer, raw),
                       errbackArgs=(answer,))

    def _call(self, req: FastRequest, request: IRequest) -> tuple[Deferred[Any], bool | None]:
        """Start the request's RPC, as ``KVRoutes`` does (same order of checks and errors).
        ``raw`` is None for writes (a JSON answer), else whether a read is ``?raw``."""
        ctx = self.ctx
        query = req.query
        if req.method == b"GET":
            args = query_args(request, ctx)
            args["Key"] = req.key
            return ctx.rpc("KVS.Get", args), "raw" in query
        if req.method == b"PUT":
            flags = uint_arg(request, "flags") or 0
            args = write_args(request, ctx)
            args["Op"] = "set"
            args["DirEnt"] = {"Key": req.key, "Value": req.body, "Flags": flags, "ModifyIndex": 0}
            return ctx.rpc("KVS.Apply", args), None
        args = write_args(request, ctx)
        args.update(Op="delete", DirEnt={"Key": req.key})
        return ctx.rpc("KVS.Apply", args), None

    def _replied(self, reply: Any, answer: Answer, raw: bool | None) -> None:
        request = as_request(answer)
        try:
            if raw is None:
                body = json_reply(request, reply)
            else:
                body = _shared_render.render(answer, reply, raw)
        except Exception:
            body = error_reply(request, Failure())
        self._respond(answer, body)

    def _failed(self, failure: Failure, answer: Answer) -> None:
        if self.transport is None or self.closing:
            return None  # the client went away (as the full path: nothing is written)
        request = as_request(answer)
        if isinstance(failure.value, CancelledError):
            # cancelled by something else than the client leaving: as the full path (Klein
            # hands it to APIRequest.processingFailed), logged and a one-line 500
            log_unexpected(request, failure)
            self._respond(answer, text_reply(request, 500, "internal error"))
            return None
        self._respond(answer, error_reply(request, failure))
        return None

    def _respond(self, answer: Answer, body: bytes) -> None:
        self.busy = None
        transport: Any = self.transport
        if transport is None or self.closing:
            return
        if self._reading:
            # answered while reading its request: Twisted's buffered write, so that under load
            # the answers of one reactor turn leave together (sending each at once cost 12-20 %
            # of GETs/s, docs/benchmarks.md)
            transport.write(answer.response(body))
        else:
            # answered later (a raft commit, a blocking query woken): nothing to batch it with
            # in this turn, so it leaves at once instead of on the next one
            write_now(transport, answer.response(body))
        log = getattr(self.site, "log", None)
        if callable(log):
            log(answer)
        self.serving = False
        if answer.req.close:
            self.closing = True
            self._stop_timers()
            transport.unregisterProducer()
            transport.loseConnection()
            return
        self.idle_since = now = self._now()
        self._arm_idle(self.timeOut)
        if self.buf:
            self.header_start = now  # the next request, already buffered (as APIChannel)
            self._arm_header(self.limits.read_header_timeout)
            self._advance()
        self._sync_reading()

    # -- hand-over -----------------------------------------------------------------------------

    def handover(self) -> None:
        """Give the connection, and what is buffered, to the twisted.web ``APIChannel``."""
        if self.inner is not None:
            return
        site = self.site
        inner = api_channel_factory(site)
        inner.factory = site
        inner.callLater = self.callLater
        inner.timeOut = self.timeOut
        inner.requestFactory = self.requestFactory
        inner.site = site
        header_left = None
        if self.header_start is not None:
            header_left = self.header_start + self.limits.read_header_timeout - self._now()
        self._stop_timers()
        transport: Any = self.transport
        self.inner = inner
        if transport is None:
            return
        transport.unregisterProducer()
        paused, self.reading_paused, self.transport_full = self.reading_paused, False, False
        if paused:
            # reading starts again under the channel (which the transport pauses in turn if
            # its send buffer is still full at the next write)
            transport.resumeProducing()
        inner.makeConnection(transport)
        channel = inner._channel
        if isinstance(channel, APIChannel) and self.buf:
            channel.carry_header_deadline(header_left)
        data, self.buf, self.pending = bytes(self.buf), bytearray(), None
        if data:
            inner.dataReceived(data)

    def _take_back(self, data: bytes) -> bool:
        """Take the connection back from the twisted.web channel if it is between requests
        (its last request answered, nothing buffered, nothing pending: no parked query, no
        refusal, no timeout under way) and ``data``, the start of the next request, may be the
        fast path's. Then the next request starts on the fast path again."""
        channel: Any = getattr(self.inner, "_channel", None)
        transport: Any = self.transport
        if not isinstance(channel, APIChannel) or transport is None or transport.disconnecting:
            return False
        if not channel_idle(channel) or self._verdict(data) is HANDOVER:
            return False
        channel.setTimeout(None)
        channel.detach()  # dropped: it has no request and no timer left
        transport.unregisterProducer()
        self.inner = None
        transport.registerProducer(self, True)
        self.header_start = None
        self.idle_since = self._now()
        self._arm_idle(self.timeOut)
        return True

    def _next(self) -> FastRequest | object | None:
        """The next request in ``buf`` once all of it is in (None before), or HANDOVER. The
        head is parsed once: then only the body's length is waited for."""
        pending = self.pending
        if pending is None:
            head = self._verdict(bytes(self.buf[:MAX_HEAD + 5]))
            if not isinstance(head, tuple):
                return head
            pending = self.pending = head
        req, start = pending
        if len(self.buf) < req.size:
            return None
        self.pending = None
        req.body = bytes(self.buf[start:req.size])
        return req

    def _verdict(self, buf: bytes) -> tuple[FastRequest, int] | object | None:
        """:func:`~wanfedtx.http.fastparse.parse_head` with this agent's value size limit."""
        return parse_head(buf, self.limits.kv_max_value_size)

    # -- timers --------------------------------------------------------------------------------

    def _arm_header(self, timeout: float) -> None:
        if timeout > 0 and self._header_timer is None:
            self._header_timer = self.callLater(timeout, self._header_check)

    def _header_check(self) -> None:
        self._header_timer = None
        start = self.header_start
        if start is None or self.inner is not None or self.closing:
            return
        timeout = self.limits.read_header_timeout
        left = start + timeout - self._now()
        if left > 0:
            self._header_timer = self.callLater(left, self._header_check)
            return
        report = getattr(self.site, "report_refusal", None)
        if callable(report):
            report(
                "header-timeout",
                "HTTP request headers not received in time: from={peer} "
                "cause=header read deadline ({timeout}s) passed",
                peer=self._peer(),
                timeout=f"{timeout:g}",
            )
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _arm_idle(self, timeout: float | None) -> None:
        if timeout and self._idle_timer is None:
            self._idle_timer = self.callLater(timeout, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        timeout = self.timeOut
        if not timeout or self.inner is not None or self.closing:
            return
        if self.serving:
            return  # re-armed when the answer is written (as twisted.web's timeout)
        left = self.idle_since + timeout - self._now()
        if left > 0:
            self._idle_timer = self.callLater(left, self._idle_check)
            return
        ratelog = getattr(self.site, "ratelog", None)
        if isinstance(ratelog, RateLimitedLog):
            ratelog.info("idle-timeout", "Timing out idle HTTP client: from={peer}",
                         peer=self._peer())
        transport: Any = self.transport
        self.closing = True
        self._stop_timers()
        if transport is not None:
            self._abort_call = self.callLater(self.abortTimeout, transport.abortConnection)
            transport.unregisterProducer()
            transport.loseConnection()

    def _stop_timers(self) -> None:
        for name in ("_header_timer", "_idle_timer"):
            timer = getattr(self, name)
            setattr(self, name, None)
            if timer is not None and timer.active():
                timer.cancel()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)
            self.transport = None
            return
        self._stop_timers()
        abort, self._abort_call = self._abort_call, None
        if abort is not None and abort.active():
            abort.cancel()
        busy, self.busy = self.busy, None
        self.closing = True
        if busy is not None:
            busy.cancel()  # as Klein: the handler's Deferred is cancelled
        self.transport = None


_MISSING = object()
# (attribute, value when the channel is between requests) of twisted.web's HTTPChannel; a
# missing attribute (another Twisted) reads as "not between requests": the channel keeps it.
_IDLE_WHEN: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("requests", lambda v: not v),
    ("_handlingRequest", lambda v: not v),
    ("_dataBuffer", lambda v: not v),
    ("_buffer", lambda v: not v),
    ("_busyReceiving", lambda v: not v),
    ("paused", lambda v: not v),
    ("line_mode", bool),
    ("persistent", bool),
    ("refused", lambda v: not v),
    ("_transferDecoder", lambda v: v is None),
    ("_requestProducer", lambda v: v is None),
    ("_waitingForTransport", lambda v: not v),
    ("_abortingCall", lambda v: v is None),
    ("_HTTPChannel__first_line", lambda v: v == 1),
    ("_HTTPChannel__header", lambda v: v == b""),
)


def channel_idle(channel: APIChannel) -> bool:
    """True if twisted.web's ``channel`` is between requests: its last answer written, nothing
    buffered or pending (no parked query, no refusal, no timeout under way)."""
    for name, idle in _IDLE_WHEN:
        value = getattr(channel, name, _MISSING)
        if value is _MISSING or not idle(value):
            return False
    return True


def kv_context(resource: object) -> APIContext | None:
    """The context of the KV routes ``resource`` serves at ``/v1/kv/``: through the agent's ACL
    gate (which leaves ``/v1/kv/`` to the RPC handlers' own checks) to the composed API. None
    when the resource is anything else: the fast path then stays off."""
    if isinstance(resource, AgentACLGate):
        resource = resource.inner
    api = getattr(resource, "api", None)
    if not isinstance(api, API):
        return None
    family = api.family_at("/v1/kv/")
    return family.ctx if isinstance(family, KVRoutes) else None


def channel_factory(site: Any) -> Any:
    """``Site.protocol``: a :class:`FastChannel` when the site serves the KV routes (its
    ``fast_kv`` context), else the twisted.web ``APIChannel``."""
    ctx = getattr(site, "fast_kv", None)
    if isinstance(ctx, APIContext):
        return FastChannel(ctx)
    return api_channel_factory(site)
