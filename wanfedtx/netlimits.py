# -*- test-case-name: tests.security.test_security_misc_backlog -*-
"""Listen backlogs for every TCP listener: the kernel's ``somaxconn``, not Twisted's 50.

Twisted's ``listenTCP`` asks for a backlog of 50; a burst of thousands of connects then waits out
SYN retries for over a minute. Go's ``net.Listen`` (and so Consul) uses ``somaxconn``. This
primitive is shared by every package that listens (gossip, gateway, rpc, agent); it lives below
them all so none has to import the agent.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_BACKLOG = 4096
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def listen_backlog(path: Path = SOMAXCONN) -> int:
    """The kernel's ``somaxconn`` (what Go's ``net.Listen`` uses), or 4096 if unreadable."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_BACKLOG
    return max(1, min(value, 65535))
