# -*- test-case-name: tests.unit.test_hostport -*-
"""``host:port`` strings in one place: split, join, normalize, and the text of a peer address.

Consul writes addresses the way Go's ``net.JoinHostPort`` does: an IPv6 host goes in brackets
(``[::1]:8300``), anything else is ``host:port``. Parsing accepts both spellings and also an
unbracketed IPv6 host followed by a port (``::1:8300``, split at the last colon), as the parsers
this module replaces did. Errors are ``ValueError`` with a message naming the address; callers turn
them into their own one-line errors.
"""

from __future__ import annotations

import ipaddress

MAX_PORT = 65535


def format_host(host: str) -> str:
    """``host`` as it appears before ``:port``: IPv6 (any ``:`` in it) in brackets."""
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return f"[{host}]"
    return host


def join_host_port(host: str, port: int | str) -> str:
    """``"host:port"``, or ``"[v6]:port"`` when the host contains a colon (``net.JoinHostPort``)."""
    return f"{format_host(host)}:{port}"


def split_host_port(addr: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host without brackets, port).

    Raises ``ValueError`` when there is no ``:port``, the port is not a decimal number in
    0..65535, or the host is empty (unless ``default_host`` is given: ``":8443"`` then means
    ``(default_host, 8443)``).
    """
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or int(port) > MAX_PORT:
        raise ValueError(f"address {addr!r} must be host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif "[" in host or "]" in host:
        raise ValueError(f"address {addr!r} has unbalanced brackets")
    if not host:
        if default_host is None:
            raise ValueError(f"address {addr!r} must be host:port")
        host = default_host
    return host, int(port)


def normalize_host_port(addr: str) -> str:
    """``host:port`` in one spelling: IP literals compressed (IPv6 in brackets), names lower-cased.

    An address without a port is only lower-cased. Used to compare addresses that peers may
    spell differently (``[::0001]:8300`` and ``[::1]:8300``)."""
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr.lower()
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"{host.lower()}:{port}"
    return f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip.compressed}:{port}"


def address_text(addr: object) -> str:
    """``host:port`` of a Twisted address (``.host``/``.port``) or a ``(host, port, ...)`` tuple,
    IPv6 in brackets; ``?`` if it is neither (a UNIX socket, a test double without a host)."""
    host = getattr(addr, "host", None)
    port = getattr(addr, "port", None)
    if host is None and isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
    if host is None:
        return "?"
    return join_host_port(str(host), str(port))
