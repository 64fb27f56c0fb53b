# -*- test-case-name: tests.unit.test_metrics -*-
"""Process metrics with the names of Go's Prometheus process collector, read from ``/proc``.

``process_resident_memory_bytes``, ``process_virtual_memory_bytes``, ``process_cpu_seconds_total``,
``process_open_fds``, ``process_max_fds`` and ``process_start_time_seconds``: what a Consul
agent's ``/v1/agent/metrics?format=prometheus`` shows, so the same dashboards and alerts work.
Each value is read when the metrics are rendered; a file that cannot be read gives 0 (a metrics
scrape never fails because of one of them).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path

from wanfedtx.metrics import Registry

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def _or_zero(read: Callable[[], float]) -> Callable[[], float]:
    def safe() -> float:
        try:
            return read()
        except (OSError, ValueError, IndexError):
            return 0.0

    return safe


def _stat_fields() -> list[str]:
    """``/proc/self/stat`` fields after the command name (field 3 of proc(5) is index 0)."""
    text = Path("/proc/self/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def resident_bytes() -> float:
    return float(int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE)


def virtual_bytes() -> float:
    return float(int(_stat_fields()[20]))  # vsize, field 23


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def open_fds() -> float:
    return float(len(os.listdir("/proc/self/fd")))


def max_fds() -> float:
    return float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def start_time_seconds() -> float:
    """Seconds since the epoch when the process started (boot time + start ticks)."""
    boot = 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            boot = float(line.split()[1])
            break
    return boot + int(_stat_fields()[19]) / _TICKS  # starttime, field 22


def register_process_metrics(registry: Registry) -> None:
    """Add the process collector's metrics to ``registry`` (idempotent)."""
    registry.gauge_func("process_resident_memory_bytes", "Resident memory size in bytes.",
                        _or_zero(resident_bytes))
    registry.gauge_func("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                        _or_zero(virtual_bytes))
    registry.counter_func("process_cpu_seconds_total",
                          "Total user and system CPU time spent in seconds.",
                          _or_zero(cpu_seconds))
    registry.gauge_func("process_open_fds", "Number of open file descriptors.",
                        _or_zero(open_fds))
    registry.gauge_func("process_max_fds", "Maximum number of open file descriptors.",
                        _or_zero(max_fds))
    registry.gauge_func("process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.",
                        _or_zero(start_time_seconds))
