# -*- test-case-name: tests.unit.agent.test_agent_limits -*-
"""Process limits an agent raises for itself: open files and the listen backlog.

A server holds one socket per HTTP client, and blocking queries keep thousands of them open.
As Go programs such as Consul do at start, the agent raises its soft open-files limit to the
hard limit; listening sockets ask for the kernel's ``somaxconn`` backlog rather than
Twisted's default of 50, so bursts of new connections are not dropped.
"""

from __future__ import annotations

import resource

# The backlog helper lives in a primitive module so gossip and gateway can use it too.
from wanfedtx.netlimits import DEFAULT_BACKLOG, SOMAXCONN, listen_backlog

__all__ = ["DEFAULT_BACKLOG", "SOMAXCONN", "listen_backlog", "raise_open_files_limit"]


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
