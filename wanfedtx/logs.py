"""Logging setup for the agent and the CLI: ``twisted.logger`` observers, text or JSON, by level.

Every module logs through ``twisted.logger.Logger`` with structured fields; this module only decides
where events go and which levels pass (``log_level`` in config, ``-log-level`` on the command line).
Consul's level names are accepted: trace, debug, info, warn, err (and warning, error).
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)

_LEVELS: dict[str, LogLevel] = {
    "trace": LogLevel.debug,
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "err": LogLevel.error,
    "error": LogLevel.error,
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


def make_observer(
    level: str = "info", json: bool = False, out: IO[str] | None = None
) -> ILogObserver:
    """An observer writing events at ``level`` or above to ``out`` (stderr by default)."""
    stream = out if out is not None else sys.stderr
    inner = jsonFileLogObserver(stream) if json else textFileLogObserver(stream)
    predicate = LogLevelFilterPredicate(defaultLogLevel=parse_level(level))
    return FilteringLogObserver(inner, [predicate])


def start_logging(level: str = "info", json: bool = False, out: IO[str] | None = None) -> None:
    """Begin logging to ``out`` for a command-line process (not used under twistd)."""
    globalLogBeginner.beginLoggingTo([make_observer(level, json, out)], redirectStandardIO=False)
