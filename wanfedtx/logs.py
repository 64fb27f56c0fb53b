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
  ``@timestamp`` and every structured field of the event.
"""

from __future__ import annotations

import json as _json
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any, cast

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


def _module(event: dict[str, Any]) -> str:
    return str(event.get("log_namespace") or "")


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("log_") and k != "ui"}


# Twisted's own lines about factories and ports starting and stopping: DEBUG, not INFO.
_CHATTER = re.compile(
    r"^(Starting|Stopping) (factory|protocol) |^\(\S+ Port \d+ Closed\)$| starting on \d+$"
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


def format_text(event: dict[str, Any]) -> str | None:
    """One Consul-style text line for ``event`` (with a traceback if it carries a failure)."""
    message = formatEvent(event)
    if event.get("ui"):
        return message + "\n"
    level = event_level(event)
    line = f"{_timestamp(event)} {_LEVEL_TAGS.get(level, '[INFO] ')} {_module(event)}: {message}\n"
    failure = event.get("log_failure")
    if failure is not None:
        line += failure.getTraceback()
    return line


def format_json(event: dict[str, Any]) -> str | None:
    """One hclog-style JSON line for ``event``."""
    level = event_level(event)
    record: dict[str, Any] = {
        "@level": _LEVEL_JSON.get(level, "info"),
        "@message": formatEvent(event),
        "@module": _module(event),
        "@timestamp": _timestamp(event),
    }
    for k, v in _fields(event).items():
        try:
            _json.dumps(v)
        except (TypeError, ValueError):
            v = repr(v)
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


def start_logging(level: str = "info", json: bool = False, out: IO[str] | None = None) -> None:
    """Begin logging to ``out`` for a command-line process (not used under twistd)."""
    globalLogBeginner.beginLoggingTo([make_observer(level, json, out)], redirectStandardIO=False)


_twistd_settings: dict[str, Any] = {"level": "info", "json": False}


def configure_twistd(level: str, json: bool) -> None:
    """Remember ``log_level``/``log_json`` for ``twistd_observer`` (called by the plugin)."""
    _twistd_settings["level"] = level
    _twistd_settings["json"] = json


def twistd_observer() -> ILogObserver:
    """For ``twistd --logger wanfedtx.logs.twistd_observer``: Consul-style output to stdout at
    the configured ``log_level`` (twistd calls this after the plugin has loaded the config)."""
    return make_observer(_twistd_settings["level"], _twistd_settings["json"], sys.stdout)


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
    return make_observer(_twistd_settings["level"], _twistd_settings["json"], stream)
