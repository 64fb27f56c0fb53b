"""Process limits an agent raises for itself: open files and the listen backlog.

A server holds one socket per HTTP client, and blocking queries keep thousands of them open.
As Go programs such as Consul do at start, the agent raises its soft open-files limit to the
hard limit; listening sockets ask for the kernel's ``somaxconn`` backlog rather than
Twisted's default of 50, so bursts of new connections are not dropped.
"""

from __future__ import annotations

import resource
from pathlib import Path

DEFAULT_BACKLOG = 4096
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


def listen_backlog(path: Path = SOMAXCONN) -> int:
    """The kernel's ``somaxconn`` (what Go's ``net.Listen`` uses), or 4096 if unreadable."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_BACKLOG
    return max(1, min(value, 65535))
