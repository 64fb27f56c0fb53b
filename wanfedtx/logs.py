# -*- test-case-name: tests.unit.agent.test_agent_units,tests.unit.test_logs -*-
"""Logging setup for the agent and the CLI: ``twisted.logger`` observers, text or JSON, by level.

Every module logs through ``twisted.logger.Logger`` with structured fields; this module only decides
where events go and which levels pass (``log_level`` in config, ``-log-level`` on the command line).
Consul's level names are accepted: trace, debug, info, warn, err (and warning, error).

Output looks like Consul's (hclog) output:

* text: ``2026-01-02T03:04:05.678Z [INFO]  agent: Started HTTP server: address=... network=tcp``;
  events logged with ``ui=True`` (the ``==> Starting Consul agent...`` banner) are written as
  their bare message, as Consul's UI lines are;
* JSON (``log_json``): one object per line with ``@level``, ``@message``, ``@module``,
  ``@timestamp`` and the structured fields of the event (never Twisted's own bookkeeping: no
  ``log_*`` keys, no legacy ``system``/``isError``/``format`` keys, no object reprs).

The name a line shows (``@module``) is Consul's logger name for that part: :data:`LOGGERS` maps
the namespace each module logs under to it (``docs/logging.md`` lists them; a test walks the
package). With ``log_file`` the same lines also go to rotated files (``wanfedtx.logfile``).
"""

from __future__ import annotations

import json as _json
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any, cast

from twisted.internet.interfaces import IReactorTime
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogLevel,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

from wanfedtx.logfile import LogFileSettings, RotatingLogFile

_LEVELS: dict[str, LogLevel] = {
    "trace": LogLevel.debug,
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "err": LogLevel.error,
    "error": LogLevel.error,
}

_LEVEL_TAGS = {
    LogLevel.debug: "[DEBUG]",
    LogLevel.info: "[INFO] ",
    LogLevel.warn: "[WARN] ",
    LogLevel.error: "[ERROR]",
    LogLevel.critical: "[ERROR]",
}
_LEVEL_JSON = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warn",
    LogLevel.error: "error",
    LogLevel.critical: "error",
}


class UnknownLogLevel(ValueError):
    """A log level name that is not one of Consul's."""


def parse_level(name: str) -> LogLevel:
    """Map a Consul log level name to a ``LogLevel``; raise ``UnknownLogLevel`` otherwise."""
    try:
        return _LEVELS[name.strip().lower()]
    except KeyError:
        raise UnknownLogLevel(
            f"Invalid log level: {name!r}; use one of trace, debug, info, warn, err"
        ) from None


def _timestamp(event: dict[str, Any]) -> str:
    t = float(event.get("log_time") or time.time())
    millis = int((t - int(t)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{millis:03d}Z"


#: The namespace each module logs under -> the logger name its lines show: Consul's where Consul
#: has one. Namespaces starting with ``twisted`` (and Twisted's legacy events) are Twisted's own.
LOGGERS: dict[str, str] = {
    "agent": "agent",
    "ui": "agent",
    "agent.http": "agent.http",
    "wanfedtx.http.common": "agent.http",
    "wanfedtx.local.ae": "agent",
    "wanfedtx.local.checks": "agent",
    "agent.client": "agent.client",
    "agent.leader": "agent.server.leader",
    "agent.server.leader": "agent.server.leader",
    "federation": "agent.server.leader",
    "agent.server.replication.federation_state": "agent.server.replication.federation_state",
    "gateway_locator": "agent.server.gateway_locator",
    "agent.server.connect": "agent.server.connect",
    "agent.server.acl": "agent.server.acl",
    "agent.acl": "agent",  # the agent's token store (/v1/agent/token/*), as Consul's agent logs it
    "agent.discover.mdns": "agent",  # go-discover's mdns lookups for retry_join/primary_gateways
    "agent.connect.leaf": "agent.cache",  # the agent's leaf-certificate cache
    "agent.server.replication.acl": "agent.server.replication.acl",
    "agent.server.raft": "agent.server.raft",
    "wanfedtx.raft": "agent.server.raft",
    "wanfedtx.raft.storage": "agent.server.raft",
    "wanfedtx.raft.transport": "agent.server.raft",
    "wanfedtx.fsm.machine": "agent.server.fsm",
    "wanfedtx.rpc": "agent.server.rpc",
    "wanfedtx.wanfed": "agent.server.memberlist.wan",
    "wanfedtx.gossip.memberlist": "agent.memberlist",
    "wanfedtx.gossip.transport": "agent.memberlist",
    "wanfedtx.gossip.serf": "agent.serf",
    "wanfedtx.tls": "agent.tlsutil",
    "wanfed.gateway": "gateway",
    "proxycfg": "gateway.proxycfg",
    "twisted": "twisted",
    "log_legacy": "twisted",
}


def logger_name(namespace: str) -> str:
    """The name lines of ``namespace`` show: :data:`LOGGERS`, Twisted's own namespaces as
    ``twisted``, anything else as it is."""
    name = LOGGERS.get(namespace)
    if name is not None:
        return name
    if namespace.startswith("twisted."):
        return "twisted"
    return namespace


def _module(event: dict[str, Any]) -> str:
    if event.get("log_legacy") is not None and not event.get("log_namespace"):
        return "twisted"
    return logger_name(str(event.get("log_namespace") or ""))


# Keys Twisted's legacy log (``twisted.python.log``) adds to every event it bridges.
_LEGACY_KEYS = frozenset({"message", "system", "isError", "format", "time", "why", "failure",
                          "printed"})


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    twisted_event = _module(event) == "twisted"
    return {
        k: v
        for k, v in event.items()
        if not k.startswith("log_") and k != "ui" and not (twisted_event and k in _LEGACY_KEYS)
        and k not in ("isError", "system")
    }


def _plain(value: Any) -> bool:
    """Whether ``value`` is plain data (JSON-able without reprs of objects)."""
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


# Twisted's own lines about factories and ports starting and stopping, the reactor stopping and
# twisted.web's per-request access log: DEBUG, not INFO.
_CHATTER = re.compile(
    r"^(Starting|Stopping) (factory|protocol) |^\(\S+ Port \d+ Closed\)$| starting on \d+$"
    r"|^Main loop terminated\.$"
    # twisted.web's access log (combined log format): one line per request, as the agent's
    # "Request finished" lines
    r'|^"[^"]+" - \S+ \[\d\d/\w{3}/\d{4}:'
)


def event_level(event: dict[str, Any]) -> LogLevel:
    """The level ``event`` is shown at: its own, except that Twisted's factory and port chatter
    (``Starting factory <...>``, ``... starting on 8500``, ``(TCP Port 8500 Closed)``) is
    DEBUG."""
    level: LogLevel = event.get("log_level", LogLevel.info)
    if level == LogLevel.info and not event.get("ui") and _CHATTER.search(formatEvent(event)):
        debug: LogLevel = LogLevel.debug
        return debug
    return level


_PASS: PredicateResult = PredicateResult.maybe
_DROP: PredicateResult = PredicateResult.no


@implementer(ILogFilterPredicate)
class _AtLeast:
    """Lets through the events whose :func:`event_level` is ``level`` or above."""

    def __init__(self, level: LogLevel) -> None:
        self.level = level

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        if event.get("ui") or event_level(event) >= self.level:
            return _PASS
        return _DROP


# Object reprs in Twisted's messages (``<twisted.web.server.Site object at 0x7f...>``): the
# address means nothing to an operator and changes every run.
_OBJECT_AT = re.compile(r" object at 0x[0-9a-fA-F]+>")


def _message(event: dict[str, Any], module: str = "") -> str:
    message = _OBJECT_AT.sub(">", formatEvent(event))
    if module and message.startswith(module + ": "):  # a message naming its logger already
        message = message[len(module) + 2:]
    return message


def format_text(event: dict[str, Any]) -> str | None:
    """One Consul-style text line for ``event`` (with a traceback if it carries a failure)."""
    if event.get("ui"):
        return _message(event) + "\n"
    level = event_level(event)
    module = _module(event)
    message = _message(event, module)
    line = f"{_timestamp(event)} {_LEVEL_TAGS.get(level, '[INFO] ')} {module}: {message}\n"
    failure = event.get("log_failure")
    if failure is not None:
        line += failure.getTraceback()
    return line


def format_json(event: dict[str, Any]) -> str | None:
    """One hclog-style JSON line for ``event``; None for the banner lines (``ui``), which
    Consul does not write in JSON mode."""
    if event.get("ui"):
        return None
    level = event_level(event)
    module = _module(event)
    record: dict[str, Any] = {
        "@level": _LEVEL_JSON.get(level, "info"),
        "@message": _message(event, module),
        "@module": module,
        "@timestamp": _timestamp(event),
    }
    for k, v in _fields(event).items():
        if _plain(v):  # objects (a factory, a port, a transport) are Twisted's, not the user's
            record[k] = v
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = failure.getErrorMessage()
    return _json.dumps(record) + "\n"


# The lowest level any observer made here lets through. Hot paths (the per-request access log)
# ask :func:`enabled` before building an event that every observer would drop.
_lowest_level: list[LogLevel] = []


# Levels of the live log streams (``/v1/agent/monitor``): while one runs, events at its level are
# built even if no observer made here writes them.
_streams: list[LogLevel] = []


def enabled(level: LogLevel) -> bool:
    """Whether an event at ``level`` can be written (True until an observer is made)."""
    return (
        not _lowest_level
        or level >= _lowest_level[0]
        or any(level >= s for s in _streams)
    )


def stream_opened(level: LogLevel) -> None:
    """A live log stream (a monitor request) wants events at ``level`` and above."""
    _streams.append(level)


def stream_closed(level: LogLevel) -> None:
    """The stream :func:`stream_opened` announced has ended."""
    if level in _streams:
        _streams.remove(level)


def make_observer(
    level: str = "info", json: bool = False, out: IO[str] | None = None
) -> ILogObserver:
    """An observer writing events at ``level`` or above to ``out`` (stderr by default)."""
    stream = out if out is not None else sys.stderr
    inner = FileLogObserver(stream, format_json if json else format_text)
    min_level = parse_level(level)
    if not _lowest_level or min_level < _lowest_level[0]:
        _lowest_level[:] = [min_level]
    predicate = _AtLeast(min_level)
    _predicates.append(predicate)
    return FilteringLogObserver(inner, [predicate])


_predicates: list[_AtLeast] = []


def set_level(level: str) -> None:
    """A new ``log_level`` for every observer made here (the agent's reload); raises
    :class:`UnknownLogLevel` and keeps the old level for a bad name."""
    new = parse_level(level)
    for predicate in _predicates:
        predicate.level = new
    if _predicates:
        _lowest_level[:] = [new]


def file_observer(
    settings: LogFileSettings, level: str = "info", json: bool = False,
    clock: IReactorTime | None = None,
) -> ILogObserver:
    """An observer writing to ``log_file`` with rotation (raises ``OSError`` when the first file
    cannot be created)."""
    return make_observer(level, json, cast(IO[str], RotatingLogFile(settings, clock)))


def start_logging(
    level: str = "info", json: bool = False, out: IO[str] | None = None,
    log_file: LogFileSettings | None = None,
) -> None:
    """Begin logging to ``out`` (and ``log_file``) for a command-line process (not used under
    twistd); raises ``OSError`` when ``log_file`` cannot be created."""
    observers = [make_observer(level, json, out)]
    if log_file is not None:
        observers.append(file_observer(log_file, level, json))
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)


_twistd_settings: dict[str, Any] = {"level": "info", "json": False, "file": None}


def configure_twistd(level: str, json: bool, log_file: LogFileSettings | None = None) -> None:
    """Remember ``log_level``/``log_json``/``log_file`` for ``twistd_observer`` (called by the
    plugin)."""
    _twistd_settings["level"] = level
    _twistd_settings["json"] = json
    _twistd_settings["file"] = log_file


def _with_file(observer: ILogObserver) -> ILogObserver:
    """``observer``, plus the ``log_file`` observer when the plugin configured one."""
    settings = _twistd_settings["file"]
    if settings is None:
        return observer
    extra = file_observer(settings, _twistd_settings["level"], _twistd_settings["json"])

    @implementer(ILogObserver)
    def both(event: dict[str, Any]) -> None:
        observer(event)
        extra(event)

    return cast(ILogObserver, both)


def twistd_observer() -> ILogObserver:
    """For ``twistd --logger wanfedtx.logs.twistd_observer``: Consul-style output to stdout at
    the configured ``log_level`` (twistd calls this after the plugin has loaded the config)."""
    return _with_file(
        make_observer(_twistd_settings["level"], _twistd_settings["json"], sys.stdout)
    )


def twistd_log_observer(twistd_options: Mapping[str, Any]) -> ILogObserver | None:
    """The observer the wanfed twistd plugin gives its application (twistd uses an
    application's ``ILogObserver`` component unless ``--logger`` names another): Consul-style
    lines at the configured ``log_level`` (``log_json``: JSON), written where twistd would write
    its own log: stdout with ``-n`` and no ``--logfile``, or ``--logfile`` (``-``: stdout;
    default ``twistd.log``). None with ``--logger`` or ``--syslog``: twistd's choice stands."""
    if twistd_options.get("logger") or twistd_options.get("syslog"):
        return None
    name = twistd_options.get("logfile")
    stream: IO[str]
    if name == "-" or (not name and twistd_options.get("nodaemon")):
        stream = sys.stdout
    else:
        from twisted.python.logfile import LogFile

        stream = cast(IO[str], LogFile.fromFullPath(name or "twistd.log"))  # type: ignore[no-untyped-call]
    return _with_file(make_observer(_twistd_settings["level"], _twistd_settings["json"], stream))
