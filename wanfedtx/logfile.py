# -*- test-case-name: tests.unit.test_logfile -*-
"""``log_file`` with rotation: Consul's ``LogFile`` (``log_rotate_bytes``, ``log_rotate_duration``,
``log_rotate_max_files``).

``log_file`` is a directory and a file name; a value ending in ``/`` gets the name
``wanfed.log`` (Consul's is ``consul.log``). As in Consul 1.8, every file, the one being
written included, carries its creation time in Unix nanoseconds before the extension:
``log_file = "/var/log/wanfed/"`` writes ``/var/log/wanfed/wanfed-1591784491043652000.log``
(``.log`` is added when the name has no extension). Files are opened truncated, write-only,
mode 0640.

Before each write the file is rotated (closed, older files pruned, a new timestamped file
opened) when ``log_rotate_bytes`` > 0 and that many bytes were written to it, or when
``log_rotate_duration`` (default ``24h``; 0 means the default) has passed since it was created.
``log_rotate_max_files``: 0 (the default) keeps every older file; N > 0 keeps the N newest older
files; -1 deletes every older file at each rotation (only files named ``<name>-<digits><ext>``
are pruned). Time comes from an ``IReactorTime``.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime

DEFAULT_NAME = "wanfed.log"
DEFAULT_ROTATE_DURATION = 24 * 3600.0
FILE_MODE = 0o640


@attrs.frozen
class LogFileSettings:
    """The four ``log_*`` keys of the config (durations in seconds)."""

    path: str
    rotate_bytes: int = 0
    rotate_duration: float = 0.0
    rotate_max_files: int = 0

    @classmethod
    def from_runtime(cls, rt: Any) -> LogFileSettings | None:
        """The settings of a ``RuntimeConfig`` (None when ``log_file`` is not set)."""
        path = str(getattr(rt, "log_file", "") or "")
        if not path:
            return None
        return cls(
            path,
            int(getattr(rt, "log_rotate_bytes", 0)),
            float(getattr(rt, "log_rotate_duration", 0.0)),
            int(getattr(rt, "log_rotate_max_files", 0)),
        )


class _WallClock:
    """``IReactorTime.seconds`` from the system clock, for logging set up before a reactor."""

    def seconds(self) -> float:
        return time.time()


def split_path(path: str) -> tuple[str, str]:
    """``(directory, file name)`` of ``log_file``: a value ending in ``/`` takes the default
    name."""
    if path.endswith(os.sep):
        return path.rstrip(os.sep) or os.sep, DEFAULT_NAME
    directory, name = os.path.split(path)
    return directory or ".", name


class RotatingLogFile:
    """A text stream (``write``/``flush``) over timestamped, rotated files."""

    def __init__(self, settings: LogFileSettings, clock: IReactorTime | Any = None) -> None:
        self.settings = settings
        self.clock = clock if clock is not None else _WallClock()
        self.directory, self.name = split_path(settings.path)
        self.duration = settings.rotate_duration or DEFAULT_ROTATE_DURATION
        stem, ext = os.path.splitext(self.name)
        self._stem, self._ext = stem, ext or ".log"
        self._file: Any = None
        self._lock = threading.Lock()  # lines may come from threads (deferToThread callers)
        self.current = ""
        self.created = 0.0
        self.bytes_written = 0
        self._open_new()  # fail at start (a bad directory), not on the first line

    def _pattern(self, middle: str) -> str:
        return os.path.join(self.directory, f"{self._stem}-{middle}{self._ext}")

    def _glob(self) -> str:
        """The pattern of this log's files (names with glob characters matched literally)."""
        return os.path.join(
            glob.escape(self.directory), f"{glob.escape(self._stem)}-*{glob.escape(self._ext)}"
        )

    def _open_new(self) -> None:
        now = self.clock.seconds()
        path = self._pattern(str(int(now * 1_000_000_000)))
        fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, FILE_MODE)
        self._file = os.fdopen(fd, "w", encoding="utf-8")
        self.current = path
        self.created = now
        self.bytes_written = 0

    def _prune(self) -> None:
        keep = self.settings.rotate_max_files
        if keep == 0:
            return
        # only this log's timestamped files: ``<stem>-<digits><ext>`` (Consul's glob would also
        # take ``<stem>-anything<ext>``)
        own = re.compile(re.escape(self._stem) + r"-\d+" + re.escape(self._ext))
        matches = sorted(p for p in glob.glob(self._glob()) if own.fullmatch(os.path.basename(p)))
        stale = len(matches) if keep < 0 else len(matches) - keep
        for path in matches[: max(stale, 0)]:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    def _rotate_if_due(self) -> None:
        limit = self.settings.rotate_bytes
        elapsed = self.clock.seconds() - self.created
        if (limit > 0 and self.bytes_written >= limit) or elapsed >= self.duration:
            self._file.close()
            self._prune()
            self._open_new()

    def write(self, text: str) -> int:
        with self._lock:
            self._rotate_if_due()
            self._file.write(text)
            self.bytes_written += len(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
