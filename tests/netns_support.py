"""Run one test in a network namespace of its own, so fixed loopback addresses never clash.

The demo-shaped end-to-end tests use the demo's fixed addresses (127.0.1.1, 127.0.2.1, ...) and
Consul's default ports, as a user would. Two test runs on one machine (the flakiness budget runs
a second full suite beside the first) would then fight over the same ports. ``private_loopback``
moves the calling thread (pytest's main thread, where the tests, the reactor and every
subprocess they start live) into a fresh network namespace with only ``lo`` up, and back
afterwards. Threads and processes started during the test inherit it; sockets opened before the
test keep the namespace they were created in. Needs root (``CAP_SYS_ADMIN``); elsewhere the test
runs in the machine's namespace, as before (and CI, which runs as root, always isolates).
"""

from __future__ import annotations

import ctypes
import os
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


@contextmanager
def private_loopback() -> Iterator[bool]:
    """Yields True when the thread runs in its own namespace, False when it could not."""
    if os.geteuid() != 0:
        yield False
        return
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield True
        finally:
            _check(_libc.setns(original, CLONE_NEWNET), "setns back to the original namespace")
    finally:
        os.close(original)


def unused_net16(ip: str) -> str:
    """``10.N`` (a /16 for a test's bridge) that no route of this namespace uses yet: another test
    run on the machine may have a bridge of its own up."""
    routes = subprocess.run([ip, "-4", "route", "show", "table", "all"], check=True,
                            capture_output=True, text=True).stdout
    for _ in range(100):
        net = f"10.{random.randint(64, 250)}"
        if f"{net}." not in routes:
            return net
    raise RuntimeError("no free 10.N/16 for the test's bridge")
