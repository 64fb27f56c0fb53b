# -*- test-case-name: tests.unit.http.test_http_operator_agent_ops -*-
"""``PUT /v1/agent/reload`` and ``GET /v1/agent/monitor``: the :class:`AgentOpsRoutes` family.

``/v1/agent/reload`` calls the agent's ``reload()`` and answers 200 (empty body) when it
succeeds, 500 with the error text when it fails, as Consul's.

``/v1/agent/monitor?loglevel=<level>[&logjson]`` streams the agent's log lines: the answer
(200, chunked) starts at once, then every log event at ``loglevel`` (default ``INFO``, Consul's
names, case-insensitive) or above is written as one line in the agent's format (JSON with
``?logjson``) until the client goes away. An unknown level answers 400
``Unknown log level: <value>``. The lines come from a ``twisted.logger`` observer added to the
global log publisher for the life of the request; when the client reads slower than the agent
logs, lines beyond :data:`MONITOR_BUFFER_LINES` waiting in the connection are dropped and
counted, and the count is logged once the client has caught up.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import attrs
from klein import Klein
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.logger import ILogObserver, LogLevel, LogPublisher, globalLogPublisher
from twisted.logger import Logger as TwistedLogger
from zope.interface import implementer

from wanfedtx.http.common import (
    HTTPError,
    IRequest,
    arg,
    endpoint,
    has_arg,
    set_header,
    text_reply,
)
from wanfedtx.http.family import family_app
from wanfedtx.logs import (
    UnknownLogLevel,
    event_level,
    format_json,
    format_text,
    parse_level,
    stream_closed,
    stream_opened,
)

log = TwistedLogger(namespace="agent.http")

MONITOR_BUFFER_LINES = 512
"""Lines a slow monitor client may have waiting before new lines are dropped (Consul's 512)."""


class IAgentOps(Protocol):
    """What the routes need from the agent: ``reload()`` returns None, a Deferred or a coroutine,
    and fails with an exception whose text is the error the caller sees."""

    def reload(self) -> object: ...


@implementer(ILogObserver)
class MonitorObserver:
    """Writes each event at ``level`` or above to ``request`` as one formatted line."""

    def __init__(self, request: IRequest, level: LogLevel,
                 fmt: Callable[[dict[str, Any]], str | None]) -> None:
        self.request = request
        self.level = level
        self.fmt = fmt
        self.pending = 0  # lines written since the transport last drained
        self.dropped = 0
        self.closed = False

    def __call__(self, event: dict[str, Any]) -> None:
        if self.closed or event.get("ui"):
            return
        if event_level(event) < self.level:
            return
        if self.pending >= MONITOR_BUFFER_LINES and self._backed_up():
            self.dropped += 1
            return
        try:
            line = self.fmt(event)
            if not line:
                return
            self.request.write(line.encode("utf-8", "replace"))
        except Exception:  # a broken connection must never break the log publisher
            self.closed = True
            return
        self.pending += 1
        if not self._backed_up():
            self.pending = 0
            if self.dropped:
                dropped, self.dropped = self.dropped, 0
                log.warn("Dropped logs during monitor request: dropped_count={dropped_count}",
                         dropped_count=dropped)

    def _backed_up(self) -> bool:
        transport = getattr(self.request.channel, "transport", None)
        buffered = getattr(transport, "dataBuffer", b"") or b""
        queued = getattr(transport, "_tempDataBuffer", []) or []
        return bool(buffered) or bool(queued)


@attrs.define
class AgentOpsRoutes:
    """``/v1/agent/reload`` and ``/v1/agent/monitor`` of ``ops`` (the agent)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/agent/reload", "/v1/agent/monitor")

    ops: IAgentOps
    publisher: LogPublisher = attrs.field(default=globalLogPublisher)

    @app.route("/v1/agent/reload", methods=["PUT"])
    @endpoint
    async def reload(self, request: IRequest) -> bytes:
        try:
            result = self.ops.reload()
            if inspect.iscoroutine(result):
                await ensureDeferred(result)
            else:
                await maybeDeferred(lambda: result)
        except Exception as exc:
            raise HTTPError(500, str(exc)) from None
        return text_reply(request, 200, "")

    @app.route("/v1/agent/monitor", methods=["GET"])
    def monitor(self, request: IRequest) -> Any:
        name = arg(request, "loglevel") or "INFO"
        try:
            level = parse_level(name)
        except UnknownLogLevel:
            return text_reply(request, 400, f"Unknown log level: {name}")
        fmt = format_json if has_arg(request, "logjson") else format_text
        request.setResponseCode(200)
        set_header(request, "Content-Type", "text/plain; charset=utf-8")
        request.write(b"")  # status and headers now
        observer = MonitorObserver(request, level, fmt)
        self.publisher.addObserver(observer)
        stream_opened(level)  # per-request DEBUG lines are built while this monitor runs
        done: Deferred[None] = Deferred(lambda _: None)

        def finished(_: object) -> None:
            observer.closed = True
            self.publisher.removeObserver(observer)
            stream_closed(level)
            if not done.called:
                done.callback(None)

        request.notifyFinish().addBoth(finished)
        return done

