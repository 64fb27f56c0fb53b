# -*- test-case-name: tests.unit.config.test_config_fuzz,tests.unit.config.test_config_templates -*-
"""The go-sockaddr template forms Consul config accepts: ``GetInterfaceIP`` and ``GetPrivateIP``.

Consul expands address settings (``bind_addr``, ``advertise_addr``, ``client_addr``, ``retry_join``,
``primary_gateways``, ...) as go-sockaddr templates. We implement the two forms the reference's
``case-wanfed-gw`` and common deployments use:

* ``{{ GetInterfaceIP "eth0" }}``: the interface name is a regular expression (as in go-sockaddr);
  among the matching interfaces' *forwardable* addresses (RFC 6890: not loopback, link-local,
  multicast, ...), IPv4 first, then larger networks first, the first address.
* ``{{ GetPrivateIP }}``: the first private IPv4 address (RFC 6890 special-purpose ranges such as
  10/8, 172.16/12, 192.168/16, 100.64/10, 192.0.2/24) on an interface that is up and not
  loopback, preferring the interface that carries the default route.

Anything else inside ``{{ }}`` is a ``TemplateError`` naming the function. Text outside ``{{ }}`` is
kept as is (``"{{ GetPrivateIP }} 10.0.0.9"`` is two addresses after splitting on blanks).

Interfaces are read from the kernel without subprocesses: IPv4 addresses with the ``SIOCGIFCONF``
ioctl, flags with ``SIOCGIFFLAGS``, IPv6 addresses from ``/proc/net/if_inet6``, netmask with
``SIOCGIFNETMASK`` and the default route from ``/proc/net/route`` (Linux). Tests compare this view
with ``ip -j addr``. The provider is injectable (``interfaces=``) so tests can describe a host.
"""

from __future__ import annotations

import array
import fcntl
import ipaddress
import re
import socket
import struct
from collections.abc import Callable, Sequence

import attrs

from wanfedtx.config.errors import TemplateError

SIOCGIFCONF = 0x8912
SIOCGIFFLAGS = 0x8913
SIOCGIFNETMASK = 0x891B
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux: 16-byte name + 24-byte union


@attrs.frozen
class IfAddr:
    """One address of one network interface."""

    name: str
    address: str
    prefixlen: int
    up: bool
    loopback: bool
    default_route: bool = False

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.address)


InterfaceProvider = Callable[[], Sequence[IfAddr]]

# RFC 6890 ranges that go-sockaddr treats as private (the special-purpose registry entries that
# are used for private networks), IPv4 only, as GetPrivateIP considers IPv4 only.
_PRIVATE_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
    )
]


def is_forwardable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """RFC 6890 forwardable: not loopback, link-local, multicast, unspecified or "this network"."""
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        if ip in ipaddress.ip_network("0.0.0.0/8") or ip == ipaddress.ip_address("255.255.255.255"):
            return False
    return True


def _default_route_ifaces() -> set[str]:
    names: set[str] = set()
    try:
        with open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
                    names.add(fields[0])
    except OSError:
        pass
    return names


def system_interfaces() -> list[IfAddr]:
    """The host's interface addresses (Linux ioctl + /proc)."""
    defaults = _default_route_ifaces()
    out: list[IfAddr] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fd = s.fileno()
        buf = array.array("B", b"\0" * (_IFREQ_SIZE * 256))
        addr, _ = buf.buffer_info()
        res = fcntl.ioctl(fd, SIOCGIFCONF, struct.pack("iL", len(buf) * buf.itemsize, addr))
        size, _ = struct.unpack("iL", res)
        data = buf.tobytes()[:size]
        flags_cache: dict[str, int] = {}

        def flags_of(name: str) -> int:
            if name not in flags_cache:
                req = struct.pack("16sH", name.encode(), 0).ljust(_IFREQ_SIZE, b"\0")
                try:
                    r = fcntl.ioctl(fd, SIOCGIFFLAGS, req)
                    flags_cache[name] = struct.unpack("H", r[16:18])[0]
                except OSError:
                    flags_cache[name] = 0
            return flags_cache[name]

        for off in range(0, len(data), _IFREQ_SIZE):
            raw_name = data[off : off + 16].split(b"\0", 1)[0].decode(errors="replace")
            ip = socket.inet_ntoa(data[off + 20 : off + 24])
            base = raw_name.split(":", 1)[0]
            prefix = 32
            try:
                req = struct.pack("16s", raw_name.encode()).ljust(_IFREQ_SIZE, b"\0")
                r = fcntl.ioctl(fd, SIOCGIFNETMASK, req)
                mask = int.from_bytes(r[20:24], "big")
                prefix = bin(mask).count("1")
            except OSError:
                pass
            fl = flags_of(base)
            out.append(
                IfAddr(
                    name=base,
                    address=ip,
                    prefixlen=prefix,
                    up=bool(fl & IFF_UP),
                    loopback=bool(fl & IFF_LOOPBACK),
                    default_route=base in defaults,
                )
            )
        try:
            with open("/proc/net/if_inet6") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) < 6:
                        continue
                    hexaddr, _idx, plen, _scope, _flags, name = fields[:6]
                    ip6 = str(ipaddress.IPv6Address(bytes.fromhex(hexaddr)))
                    fl = flags_of(name)
                    out.append(
                        IfAddr(
                            name=name,
                            address=ip6,
                            prefixlen=int(plen, 16),
                            up=bool(fl & IFF_UP),
                            loopback=bool(fl & IFF_LOOPBACK),
                            default_route=name in defaults,
                        )
                    )
        except OSError:
            pass
    return out


def get_interface_ip(pattern: str, interfaces: Sequence[IfAddr]) -> str | None:
    """go-sockaddr ``GetInterfaceIP``: first forwardable address of the matching interfaces."""
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise TemplateError(f"invalid interface name pattern {pattern!r}: {e}") from None
    found = [a for a in interfaces if rx.search(a.name) and is_forwardable(a.ip)]
    # sort "+type,+size": IPv4 before IPv6, then larger networks (shorter prefixes) first.
    found.sort(key=lambda a: (a.ip.version, a.prefixlen))
    return found[0].address if found else None


def get_private_ip(interfaces: Sequence[IfAddr]) -> str | None:
    """go-sockaddr ``GetPrivateIP``: first private IPv4 on an up, non-loopback interface."""
    found = [
        a
        for a in interfaces
        if a.up
        and not a.loopback
        and a.ip.version == 4
        and is_forwardable(a.ip)
        and any(a.ip in n for n in _PRIVATE_V4)
    ]
    found.sort(key=lambda a: (not a.default_route, int(a.ip)))
    return found[0].address if found else None


_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)
_CALL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)((?:\s+(?:"(?:[^"\\]|\\.)*"|`[^`]*`))*)\s*\Z', re.S)
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"|`([^`]*)`', re.S)
SUPPORTED = ("GetInterfaceIP", "GetPrivateIP")


def has_template(text: str) -> bool:
    return "{{" in text


def check_template(text: str) -> None:
    """Raise ``TemplateError`` if ``text`` uses template syntax we do not implement."""
    _parse_actions(text)


def _unquote(raw: str) -> str:
    try:
        out = bytes(raw, "utf-8").decode("unicode_escape")
    except UnicodeDecodeError:
        raise TemplateError(f'invalid string literal "{raw}"') from None
    return out


def _parse_actions(text: str) -> list[tuple[int, int, str, list[str]]]:
    actions: list[tuple[int, int, str, list[str]]] = []
    pos = 0
    for m in _ACTION.finditer(text):
        body = m.group(2)
        call = _CALL.match(body)
        if call is None:
            name = body.strip().split()[0] if body.strip() else ""
            if name and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name not in SUPPORTED:
                raise TemplateError(
                    f'function "{name}" not supported; wanfed implements only '
                    'GetInterfaceIP "<name>" and GetPrivateIP'
                )
            raise TemplateError(
                f"unsupported template expression {m.group(0)!r}; wanfed implements only "
                '{{ GetInterfaceIP "<name>" }} and {{ GetPrivateIP }}'
            )
        name = call.group(1)
        args = [
            _unquote(a.group(1)) if a.group(1) is not None else a.group(2)
            for a in _ARG.finditer(call.group(2))
        ]
        if name not in SUPPORTED:
            raise TemplateError(
                f'function "{name}" not supported; wanfed implements only '
                'GetInterfaceIP "<name>" and GetPrivateIP'
            )
        want = 1 if name == "GetInterfaceIP" else 0
        if len(args) != want:
            raise TemplateError(f"wrong number of args for {name}: want {want} got {len(args)}")
        actions.append((m.start(), m.end(), name, args))
        pos = m.end()
    rest = text[pos:] if not actions else text[actions[-1][1] :]
    if "{{" in rest:
        raise TemplateError("unclosed action: missing '}}'")
    return actions


def render(text: str, interfaces: InterfaceProvider = system_interfaces) -> str:
    """Evaluate the template ``text``; return it unchanged if it contains no ``{{``."""
    if "{{" not in text:
        return text
    actions = _parse_actions(text)
    ifs = interfaces()
    out: list[str] = []
    pos = 0
    for start, end, name, args in actions:
        before = text[pos:start]
        if text[start + 2] == "-":
            before = before.rstrip()
        out.append(before)
        if name == "GetInterfaceIP":
            ip = get_interface_ip(args[0], ifs)
            if ip is None:
                raise TemplateError(
                    f'GetInterfaceIP: no interface matching "{args[0]}" has a forwardable address'
                )
        else:
            ip = get_private_ip(ifs)
            if ip is None:
                raise TemplateError("GetPrivateIP: no private IPv4 address found")
        out.append(ip)
        pos = end
        if text[end - 3] == "-":
            while pos < len(text) and text[pos].isspace():
                pos += 1
    out.append(text[pos:])
    return "".join(out)
