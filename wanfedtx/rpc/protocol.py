# -*- test-case-name: tests.unit.rpc.test_rpc_dial,tests.unit.rpc.test_rpc_frame_budget -*-
"""Twisted adapters around the RPC codec: the server protocol, its handler, and the client protocol.

``rpc-single`` (type 0 / ALPN ``consul/rpc-single``) serves one call at a time in arrival order;
``rpc-multi`` (type 4 / ALPN ``consul/rpc-multi``) runs every call as it arrives and answers in
completion order. A malformed frame logs ``RPC error`` and closes the connection.

Bounds: a frame's declared length is checked before its bytes are buffered (``FrameDecoder``,
``DEFAULT_MAX_FRAME_SIZE``), so one connection holds at most one partial frame, and the partial
frames of every connection a handler serves share one ``FrameBudget`` (``DEFAULT_PARTIAL_BUDGET``;
a frame that does not fit closes its connection). Calls a peer has
sent but not yet been answered (queued on ``rpc-single``, running on ``rpc-multi``) are capped at
``MAX_PENDING_CALLS``: at the cap the server stops reading the connection (TCP back-pressure)
and resumes below half of it, so a peer that pipelines requests without reading the answers
cannot grow the queue or the write buffer without bound.

Sending: the calls a reactor turn makes on one ``rpc-multi`` connection are joined (Twisted's TLS
layer writes them as one record at the end of the turn), except that every ``PUSH_EVERY``-th
call of a turn pushes out what is buffered so far. Under load a turn reads many requests that
each make a call (16 forwarded reads of 16 HTTP clients); without the push the first call
waits until the last request is parsed, and the server at the other end idles meanwhile.
"""

from __future__ import annotations

from collections import deque
from types import CoroutineType
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.framebudget import FrameBudget
from wanfedtx.listening import CloseNotifier
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.codec import (
    FrameDecoder,
    Request,
    Response,
    encode_request,
    encode_response,
)
from wanfedtx.rpc.constants import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_PARTIAL_BUDGET,
    MAX_PENDING_CALLS,
)
from wanfedtx.rpc.endpoints import EndpointNotFound, Endpoints
from wanfedtx.rpc.errors import ConnectionClosed, FrameError, RemoteError, RPCLayerError
from wanfedtx.rpc.interfaces import ConnectionInfo
from wanfedtx.rpc.rejections import peer_address
from wanfedtx.writenow import push_out

log = Logger(namespace="wanfedtx.rpc")

#: a turn's calls on one connection leave in batches of at most this many (the module's
#: docstring); 8 measured best for 16 closed-loop clients of forwarded reads, where it keeps the
#: calling server busy while the other answers the first half (docs/benchmarks.md)
PUSH_EVERY = 8


class RPCServerProtocol(Protocol):
    """Serves RPC requests on one connection from an ``Endpoints`` table."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        multi: bool,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        rate_log: RateLimitedLog | None = None,
        budget: FrameBudget | None = None,
    ) -> None:
        self._rlog = rate_log
        self._endpoints = endpoints
        self._multi = multi
        self._max = max_frame_size
        self._decoder = FrameDecoder(max_frame_size, budget)
        self._queue: deque[Request] = deque()
        self._busy = False
        self._closed = False
        self._pending = 0  # calls received and not yet answered
        self._paused = False

    def _t(self) -> Any:
        if self.transport is None:
            raise RuntimeError("RPC server protocol used before connectionMade")
        return self.transport

    def _throttle(self) -> None:
        """Stop reading at ``MAX_PENDING_CALLS`` unanswered calls; resume below half of it."""
        socket: Any = self.transport
        while socket is not None and not hasattr(socket, "pauseProducing"):
            socket = getattr(socket, "transport", None)  # a TLS layer: pause the socket below
        pause = getattr(socket, "pauseProducing", None)
        resume = getattr(socket, "resumeProducing", None)
        if not self._paused and self._pending >= MAX_PENDING_CALLS and pause is not None:
            self._paused = True
            pause()
        elif self._paused and self._pending < MAX_PENDING_CALLS // 2 and resume is not None:
            self._paused = False
            resume()

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        messages = self._decoder.feed(data)
        error = self._decoder.failed
        for msg in messages:
            if not isinstance(msg, Request):
                self._fail("RPC server received a response frame")
                return
            self._pending += 1
            if self._multi:
                self._dispatch(msg)
            else:
                self._queue.append(msg)
        if not self._multi:
            self._pump()
        if error is not None:
            self._fail(str(error))
            return
        self._throttle()

    def _fail(self, error: str) -> None:
        if self._rlog is not None:  # a peer's bad input: bounded, with the peer and the cause
            self._rlog.error("rpc-frame", "RPC error: from={peer} error={error}",
                             peer=_peer(self.transport), error=error)
        else:
            log.error("RPC error", error=error, conn=_peer(self.transport))
        self._closed = True
        if self.transport is not None:
            self._t().loseConnection()

    def _pump(self) -> None:
        while not self._busy and self._queue and not self._closed:
            self._busy = True
            self._dispatch(self._queue.popleft())

    def _dispatch(self, req: Request) -> None:
        try:
            endpoint = self._endpoints.lookup(req.method)
        except EndpointNotFound as e:
            self._respond(req.seq, str(e), None)
            return
        try:
            result = endpoint(req.args)
        except Exception:
            self._respond(req.seq, _error_string(req.method, Failure()), None)
            return
        if type(result) is CoroutineType:  # an ``async def`` endpoint (as maybeDeferred)
            result = Deferred.fromCoroutine(result)
        if isinstance(result, Deferred):
            result.addCallbacks(self._answered, self._raised, callbackArgs=(req.seq,),
                                errbackArgs=(req.seq, req.method))
        elif isinstance(result, Failure):
            self._respond(req.seq, _error_string(req.method, result), None)
        else:
            self._respond(req.seq, None, result)

    def _answered(self, reply: Any, seq: int) -> None:
        self._respond(seq, None, reply)

    def _raised(self, failure: Failure, seq: int, method: str) -> None:
        self._respond(seq, _error_string(method, failure), None)

    def _respond(self, seq: int, error: str | None, reply: Any) -> None:
        self._pending = max(0, self._pending - 1)
        if not self._closed:
            try:
                frame = encode_response(seq, error, reply, self._max)
            except (TypeError, ValueError, OverflowError, FrameError) as e:
                frame = encode_response(seq, f"rpc: can't encode reply: {e}", None, self._max)
            self._t().write(frame)
        if not self._multi:
            self._busy = False
            self._pump()
        if not self._closed:
            self._throttle()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self._queue.clear()
        self._decoder.close()


def _error_string(method: str, failure: Failure) -> str:
    if not isinstance(failure.value, RPCLayerError):
        log.warn("RPC endpoint {method} raised {error!r}", method=method, error=failure.value)
    return str(failure.value) or type(failure.value).__name__


def _peer(transport: Any) -> str:
    return peer_address(transport)


class RPCHandler:
    """``IRPCHandler`` for rpc-single / rpc-multi connections on the RPC port."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        multi: bool,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        clock: IReactorTime | None = None,
        budget: FrameBudget | None = None,
        rate_log: RateLimitedLog | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.multi = multi
        self.max_frame_size = max_frame_size
        # Unfinished request frames of every connection this handler serves (share one budget
        # between the rpc-single and rpc-multi handlers of a port).
        self.budget = budget if budget is not None else FrameBudget(DEFAULT_PARTIAL_BUDGET)
        # Malformed-frame lines are rate-limited (reason rpc-frame): with the port's own log when
        # given (one budget per reason per port, flushed when the port stops), else with one of
        # the handler's own when it has a clock.
        if rate_log is None and clock is not None:
            rate_log = RateLimitedLog(log, clock)
        self.rate_log = rate_log

    def build_protocol(self, conn: ConnectionInfo) -> IProtocol:
        return RPCServerProtocol(
            self.endpoints, multi=self.multi, max_frame_size=self.max_frame_size,
            rate_log=self.rate_log, budget=self.budget
        )


class RPCClientProtocol(Protocol):
    """The calling side of one RPC connection.

    ``multi=True`` sends every call at once and matches responses by sequence number;
    ``multi=False`` (rpc-single) sends the next call only after the previous one returned."""

    def __init__(self, *, multi: bool, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 clock: IReactorTime | None = None) -> None:
        self._multi = multi
        self._clock = clock
        self._max = max_frame_size
        self._decoder = FrameDecoder(max_frame_size)
        self._seq = 0
        self._pending: dict[int, Deferred[Any]] = {}
        self._waiting: deque[tuple[bytes, int, Deferred[Any]]] = deque()
        self._closed_reason: Failure | None = None
        self._closed = CloseNotifier()
        self._turn_calls = 0  # calls written in this reactor turn (counted with a clock)
        self.connected_flag = False
        #: when the last response arrived (with a clock): the pool's reaper counts idle time
        #: from the later of the last call and the last answer
        self.last_answered = 0.0

    @property
    def in_flight(self) -> int:
        return len(self._pending) + len(self._waiting)

    @property
    def is_closed(self) -> bool:
        return self._closed_reason is not None

    def connectionMade(self) -> None:
        self.connected_flag = True

    def _t(self) -> Any:
        if self.transport is None:
            raise ConnectionClosed("not connected")
        return self.transport

    def call(self, method: str, args: Any = None) -> Deferred[Any]:
        """Call ``method`` with ``args``; fires with the reply or fails with ``RemoteError``."""
        if self._closed_reason is not None:
            return _failed(
                ConnectionClosed(
                    f"RPC connection is closed ({self._closed_reason.getErrorMessage()})"
                )
            )
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFFFFFFFFFFFFFF
        try:
            frame = encode_request(seq, method, args, self._max)
        except (TypeError, ValueError, OverflowError, FrameError) as e:
            return _failed(RPCLayerError(f"rpc: can't encode arguments of {method}: {e}"))
        d: Deferred[Any] = Deferred()
        if self._multi or not self._pending:
            self._pending[seq] = d
            self._t().write(frame)
            if self._multi and self._clock is not None:
                self._count_call(self._clock)
        else:
            self._waiting.append((frame, seq, d))
        return d

    def _count_call(self, clock: IReactorTime) -> None:
        calls = self._turn_calls = self._turn_calls + 1
        if calls == 1:
            clock.callLater(0, self._end_turn)
        elif calls % PUSH_EVERY == 0:
            push_out(self.transport)

    def _end_turn(self) -> None:
        self._turn_calls = 0

    def dataReceived(self, data: bytes) -> None:
        if self._closed_reason is not None:
            return
        messages = self._decoder.feed(data)
        error = self._decoder.failed
        if messages and self._clock is not None:
            self.last_answered = self._clock.seconds()
        for msg in messages:
            if not isinstance(msg, Response) or msg.seq not in self._pending:
                self._protocol_error("RPC client received an unexpected frame")
                return
            d = self._pending.pop(msg.seq)
            if not self._multi and self._waiting:
                frame, seq, nd = self._waiting.popleft()
                self._pending[seq] = nd
                self._t().write(frame)
            if msg.error is not None:
                d.errback(RemoteError(msg.error))
            else:
                d.callback(msg.reply)
        if error is not None:
            self._protocol_error(str(error))

    def _protocol_error(self, error: str) -> None:
        log.error("RPC error", error=error, conn=_peer(self.transport))
        self._t().loseConnection()

    def close(self) -> Deferred[None]:
        """Close the connection; fires once it is closed."""
        d = self.when_closed()
        if self._closed_reason is None and self.transport is not None:
            self._t().loseConnection()
        return d

    def when_closed(self) -> Deferred[None]:
        return self._closed.when_closed()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed_reason = reason
        err = ConnectionClosed(f"RPC connection closed: {reason.getErrorMessage()}")
        pending = list(self._pending.values()) + [d for _, _, d in self._waiting]
        self._pending.clear()
        self._waiting.clear()
        for d in pending:
            d.errback(err)
        self._closed.fire()


def _failed(exc: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(exc)
    return d
