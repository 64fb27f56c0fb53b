"""wanfedtx.hostport: split, join, normalize and the text of peer addresses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from wanfedtx.hostport import (
    address_text,
    format_host,
    join_host_port,
    normalize_host_port,
    split_host_port,
)


@pytest.mark.parametrize(
    ("addr", "want"),
    [
        ("127.0.0.1:8300", ("127.0.0.1", 8300)),
        ("[::1]:8300", ("::1", 8300)),
        ("::1:8300", ("::1", 8300)),  # unbracketed v6: split at the last colon, as before
        ("gw.example.com:443", ("gw.example.com", 443)),
        ("h:0", ("h", 0)),
        ("h:65535", ("h", 65535)),
    ],
)
def test_split(addr: str, want: tuple[str, int]) -> None:
    assert split_host_port(addr) == want


@pytest.mark.parametrize(
    "addr", ["", "host", "host:", ":8300", "h:65536", "h:-1", "h:8x", "h:²", "[::1:8300", "::1]:1"]
)
def test_split_refuses(addr: str) -> None:
    with pytest.raises(ValueError, match="address"):
        split_host_port(addr)


def test_split_default_host() -> None:
    assert split_host_port(":8443", default_host="0.0.0.0") == ("0.0.0.0", 8443)
    assert split_host_port("[]:8443", default_host="0.0.0.0") == ("0.0.0.0", 8443)
    assert split_host_port("10.0.0.1:8443", default_host="0.0.0.0") == ("10.0.0.1", 8443)


def test_join_and_format() -> None:
    assert join_host_port("10.0.0.1", 8300) == "10.0.0.1:8300"
    assert join_host_port("::1", 8300) == "[::1]:8300"
    assert join_host_port("[::1]", "8300") == "[::1]:8300"
    assert format_host("fe80::1") == "[fe80::1]"
    assert format_host("node.dc1") == "node.dc1"


def test_normalize() -> None:
    assert normalize_host_port("[::0001]:8300") == "[::1]:8300"
    assert normalize_host_port("::1:8300") == "[::1]:8300"
    assert normalize_host_port("Server1.DC1:8300") == "server1.dc1:8300"
    assert normalize_host_port("010.0.0.1:1") == "010.0.0.1:1"  # not an IP literal: a name
    assert normalize_host_port("NoPort") == "noport"


def test_address_text() -> None:
    assert address_text(IPv4Address("TCP", "10.0.0.1", 8300)) == "10.0.0.1:8300"
    assert address_text(IPv6Address("TCP", "::1", 8300)) == "[::1]:8300"
    assert address_text(("::1", 7, 0, 0)) == "[::1]:7"
    assert address_text(UNIXAddress(None)) == "?"
    assert address_text(object()) == "?"


hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
)


@given(hosts, st.integers(0, 65535))
def test_join_split_round_trip(host: str, port: int) -> None:
    assert split_host_port(join_host_port(host, port)) == (host, port)


@given(st.ip_addresses(), st.integers(0, 65535))
def test_normalize_is_idempotent_and_compresses(ip: ipaddress._BaseAddress, port: int) -> None:
    once = normalize_host_port(join_host_port(ip.exploded, port))
    assert once == join_host_port(ip.compressed, port)
    assert normalize_host_port(once) == once


@given(st.text(max_size=40))
def test_split_never_raises_anything_but_value_error(text: str) -> None:
    try:
        host, port = split_host_port(text)
    except ValueError:
        return
    assert 0 <= port <= 65535 and host
