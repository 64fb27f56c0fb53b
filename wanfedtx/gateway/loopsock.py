# -*- test-case-name: tests.unit.gateway.test_gateway_loop_fastpath,tests.integration.gateway -*-
"""Sockets and the per-connection record of the gateway's ``loop`` data path (``loop.py``).

The listening socket the relay threads share and the length of its accept queue, the numeric
form of an endpoint address, the check that an upstream connect is established already, and
:class:`LoopConn`, the slotted record of one relayed connection: its sockets, pumps, epoll
masks and deadline generation around its sans-IO core.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from _socket import socket as _Socket
from typing import Any

from wanfedtx.gateway.conn import Connection
from wanfedtx.gateway.pump import Direction
from wanfedtx.gateway.snapshot import Endpoint
from wanfedtx.netlimits import listen_backlog


class LoopConn:
    """The sockets, pumps and deadlines of one connection around its sans-IO core."""

    __slots__ = (
        "connect_timeout",
        "core",
        "down",
        "down_fd",
        "endpoint",
        "gen",
        "idle_since",
        "mask_down",
        "mask_up",
        "resolving",
        "to_down",
        "to_up",
        "token",
        "up",
        "up_fd",
    )

    def __init__(self, down: _Socket, down_fd: int, core: Connection) -> None:
        self.down = down
        self.core = core
        self.down_fd = down_fd
        self.up: _Socket | None = None
        self.up_fd = -1
        self.resolving = False
        self.gen = 0  # bumped whenever a deadline or a resolution must be ignored
        self.endpoint: Endpoint | None = None
        self.connect_timeout = 0.0  # the core's Connect.timeout for the current attempt
        self.to_up: Direction | None = None
        self.to_down: Direction | None = None
        self.idle_since = 0.0
        self.mask_down = 0
        self.mask_up = 0
        self.token = 0  # non-zero once handed to the compiled relay (relaynative.py)


def listen_socket(address: tuple[str, int]) -> socket.socket:
    """A listening, non-blocking TCP socket on ``address``. ``SO_REUSEADDR`` only (no
    ``SO_REUSEPORT``): a port another process listens on is refused, never shared."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted ones
        sock.bind((host, port))
        sock.listen(listen_backlog())
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def numeric_target(address: str, port: int) -> tuple[int, Any] | None:
    """``(family, sockaddr)`` for a numeric IP address; None for a host name."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (address, port))


def connected_now(s: _Socket) -> bool:
    """Whether a connect just started is established already (it has a peer): a connect to
    this host completes inside ``connect`` itself; a remote one is still in ``SYN_SENT``."""
    try:
        s.getpeername()
    except OSError:
        return False
    return True


_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_UNACKED = struct.Struct("=I")  # tcp_info.tcpi_unacked, at byte 24


def accept_queue(sock: socket.socket, most: int = 64) -> int:
    """How many accepts to try on a listening socket epoll reported readable: the length of
    its accept queue (Linux reports it in ``tcp_info.tcpi_unacked`` for a listener), at least
    1 and at most ``most``; ``most`` if the kernel does not say (the batch then ends with
    ``EAGAIN``). Connections arriving meanwhile keep the listener readable for the next turn.
    """
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 32)
        waiting: int = _UNACKED.unpack_from(info, 24)[0]
    except (OSError, struct.error):
        return most
    return max(1, min(waiting, most))
