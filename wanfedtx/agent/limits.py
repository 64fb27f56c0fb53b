# -*- test-case-name: tests.unit.agent.test_agent_limits -*-
"""Process limits an agent sets for itself: open files, the listen backlog, large allocations.

A server holds one socket per HTTP client, and blocking queries keep thousands of them open.
As Go programs such as Consul do at start, the agent raises its soft open-files limit to the
hard limit; listening sockets ask for the kernel's ``somaxconn`` backlog rather than
Twisted's default of 50, so bursts of new connections are not dropped.

Large buffers go back to the kernel when freed: a server builds a raft snapshot of its whole
state (megabytes) every few thousand writes, and glibc's ``malloc`` serves blocks over its
``mmap`` threshold (128 KiB) with ``mmap`` -- but the first time such a block is freed it raises
that threshold to the block's size (up to 32 MiB), so every later snapshot comes from the heap,
whose free space is only returned from its top. Over hours the heap's high-water mark then
grows in steps whenever a snapshot is a little larger than any before. The agent fixes the
threshold at 128 KiB (``mallopt(M_MMAP_THRESHOLD)``, which also turns the raising off), unless
the operator set ``MALLOC_MMAP_THRESHOLD_`` in the environment.
"""

from __future__ import annotations

import ctypes
import os
import resource

# The backlog helper lives in a primitive module so gossip and gateway can use it too.
from wanfedtx.netlimits import DEFAULT_BACKLOG, SOMAXCONN, listen_backlog

__all__ = ["DEFAULT_BACKLOG", "MMAP_THRESHOLD", "SOMAXCONN", "fix_malloc_mmap_threshold",
           "listen_backlog", "raise_open_files_limit"]

M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's own initial threshold


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


def fix_malloc_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's ``mmap`` threshold at ``threshold`` bytes (see the module); True if set.
    False without glibc's ``mallopt`` (another C library) or when ``MALLOC_MMAP_THRESHOLD_``
    is set (glibc then applied the operator's value at start)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
