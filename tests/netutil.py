"""Ports for tests: the one pre-chosen-port helper, why it still exists, and its alternatives.

Tests listen on port 0 and read the bound port wherever the component allows it (Twisted's
``listenTCP(0)`` + ``getHost()``, ``HTTPServerService.bound_addresses()`` via
``Agent.http_urls()``, ``NetTransport.listen()``, the Go peers' ``ready`` event). A subprocess
given port 0 says where it listens in its log, and :func:`wait_for_lines` reads those lines
(``wanfed gateway``/``twistd wanfed-gateway``: ``gateway listening on <host>:<port>`` for the data
path, ``admin address: <host>:<port>`` for ``-admin-bind``). An address where nothing may answer
is :func:`refusing_address`: a bound socket that never listens, so no other process can take it.

A port number picked in advance is racy (another process may take it between the pick and the
bind), so :func:`free_port` is left only where a port must be known before anything listens:

- an agent's ``ports.serf_lan``/``serf_wan``/``server``: Consul's config means "disabled" by 0
  (and rejects 0 for serf_lan and server), and the agent advertises these configured numbers
  (gossip tags ``port``/``wan_join_port``, its raft/RPC address), so other agents must be told;
- a ``wanfed agent`` subprocess's ``ports.http`` (0 would disable the HTTP API, as in Consul);
- a mesh gateway's registered service port, which the gateway reads from its agent to know
  where to listen;
- ``bench/raft/raft_node.py`` subprocesses, whose command lines carry each other's addresses
  before they start.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def free_port(host: str = "127.0.0.1") -> int:
    """A port number free for both TCP and UDP on ``host`` right now (gossip binds both).

    Racy by nature: use port 0 and read the bound port whenever the component can (see the
    module docstring for where it cannot). To keep the race small the port is drawn below the
    kernel's ephemeral range (``net.ipv4.ip_local_port_range``), so that no outgoing connection
    of any process can take it between this call and the bind, a port is never handed out
    twice by one test process, and never to two test processes at once: each port handed out
    is claimed for the life of the process by a lock on its byte of a file every test run on
    the machine shares (two full runs side by side pick from the same range)."""
    low, high = _ephemeral_range()
    candidates = (PICK_LOW, low - 1) if low - 1 - PICK_LOW > 1000 else (high + 1, 65535)
    while True:
        port = _rng.randint(*candidates)
        if port in _handed_out or not _claim(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((host, port))
            except OSError:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        _handed_out.add(port)
        return port


PICK_LOW = 20000
_rng = random.Random()
_handed_out: set[int] = set()


#: Shared by every test process on the machine: byte N locked (``fcntl.lockf``) = port N is
#: handed out by a live process. Record locks belong to the process and go away with it.
CLAIMS_FILE = Path(os.environ.get("WANFED_PORT_CLAIMS", "/tmp/wanfedtx-test-port-claims"))
_claims_fd: int | None = None


def _claim(port: int) -> bool:
    """Lock ``port``'s byte of :data:`CLAIMS_FILE`; False when another process holds it."""
    global _claims_fd
    if _claims_fd is None:
        _claims_fd = os.open(CLAIMS_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.lockf(_claims_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError:
        return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


@contextmanager
def refusing_address(host: str = "127.0.0.1") -> Iterator[str]:
    """``host:port`` of a TCP socket that is bound but never listens, for the life of the block:
    every connection to it is refused, and no other process can start listening there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        yield f"{host}:{s.getsockname()[1]}"


@contextmanager
def taken_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A TCP port on ``host`` with a listener on it for the life of the block (it never
    accepts), for "Address already in use" tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        s.listen()
        yield int(s.getsockname()[1])


def wait_for_lines(
    proc: subprocess.Popen[Any], stream: IO[Any] | None, *patterns: str, timeout: float = 30.0
) -> tuple[list[re.Match[str]], str]:
    """Read ``stream`` (a pipe of ``proc``) until each of ``patterns`` matched a line.

    Returns the first match of each pattern, in order, and all the text read (it is no longer in
    the pipe). Fails with that text if ``proc`` closes the stream or ``timeout`` seconds pass
    first. Blocking: call it through ``threads.deferToThread`` from a test on the reactor."""
    if stream is None:
        raise ValueError("the stream must be a pipe (stdout=/stderr=subprocess.PIPE)")
    fd = stream.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        text = data.decode("utf-8", "replace")
        lines = text.splitlines()
        found = [next((m for ln in lines if (m := re.search(p, ln))), None) for p in patterns]
        if all(m is not None for m in found):
            return [m for m in found if m is not None], text
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no lines matching {patterns!r} within {timeout} s:\n{text}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(
                    f"the process ended its output (exit {proc.poll()}) before lines matching"
                    f" {patterns!r}:\n{text}"
                )
            data += chunk
