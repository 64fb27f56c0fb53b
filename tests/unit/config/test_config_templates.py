"""go-sockaddr templates: GetInterfaceIP and GetPrivateIP, errors for everything else, and the
host's real interfaces as the kernel reports them."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

import pytest

from wanfedtx.config.errors import TemplateError
from wanfedtx.config.sockaddr import IfAddr, render, system_interfaces

FAKE = [
    IfAddr("lo", "127.0.0.1", 8, up=True, loopback=True),
    IfAddr("eth0", "10.5.0.2", 16, up=True, loopback=False, default_route=True),
    IfAddr("eth0", "fe80::1", 64, up=True, loopback=False, default_route=True),
    IfAddr("eth1", "34.1.2.3", 24, up=True, loopback=False),
]


def fake_ifs() -> list[IfAddr]:
    return list(FAKE)


def test_get_interface_ip() -> None:
    assert render('{{ GetInterfaceIP "eth0" }}', fake_ifs) == "10.5.0.2"
    assert render("{{GetInterfaceIP `eth1`}}", fake_ifs) == "34.1.2.3"
    # the name is a regular expression, as in go-sockaddr
    assert render('{{ GetInterfaceIP "eth[01]" }}', fake_ifs) == "10.5.0.2"


def test_get_interface_ip_skips_non_forwardable() -> None:
    with pytest.raises(TemplateError, match='no interface matching "lo"'):
        render('{{ GetInterfaceIP "lo" }}', fake_ifs)
    with pytest.raises(TemplateError, match='no interface matching "eth9"'):
        render('{{ GetInterfaceIP "eth9" }}', fake_ifs)


def test_get_interface_ip_prefers_ipv4_then_larger_networks() -> None:
    ifs = [
        IfAddr("en", "2001:db8::5", 64, up=True, loopback=False),
        IfAddr("en", "10.1.1.1", 24, up=True, loopback=False),
        IfAddr("en", "10.2.0.1", 16, up=True, loopback=False),
    ]
    assert render('{{ GetInterfaceIP "en" }}', lambda: ifs) == "10.2.0.1"


def test_get_private_ip_prefers_default_route() -> None:
    ifs = [
        IfAddr("a", "10.0.0.1", 8, up=True, loopback=False),
        IfAddr("b", "192.168.1.9", 24, up=True, loopback=False, default_route=True),
        IfAddr("c", "34.1.1.1", 24, up=True, loopback=False, default_route=True),
    ]
    assert render("{{ GetPrivateIP }}", lambda: ifs) == "192.168.1.9"
    assert render("{{- GetPrivateIP -}}", fake_ifs) == "10.5.0.2"
    assert render("a {{ GetPrivateIP }} b", fake_ifs) == "a 10.5.0.2 b"
    with pytest.raises(TemplateError, match="no private IPv4"):
        render("{{ GetPrivateIP }}", lambda: [IfAddr("lo", "127.0.0.1", 8, True, True)])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{{ GetAllInterfaces | include "name" "eth0" }}', 'function "GetAllInterfaces" not'),
        ("{{ GetPublicIP }}", 'function "GetPublicIP" not supported'),
        ("{{ GetInterfaceIP }}", "wrong number of args for GetInterfaceIP: want 1 got 0"),
        ('{{ GetPrivateIP "x" }}', "wrong number of args for GetPrivateIP: want 0 got 1"),
        ("{{ 42 }}", "unsupported template expression"),
        ("{{ GetPrivateIP", "unclosed action"),
        ("{{}}", "unsupported template expression"),
    ],
)
def test_other_templates_are_clear_errors(text: str, match: str) -> None:
    with pytest.raises(TemplateError, match=match):
        render(text, fake_ifs)


def test_plain_text_untouched() -> None:
    assert render("10.0.0.1", fake_ifs) == "10.0.0.1"


def test_system_interfaces_match_ip_command() -> None:
    """Our ioctl + /proc view of the host agrees with iproute2's."""
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is needed (scripts/apt-packages.txt lists it)")
    out = json.loads(subprocess.check_output(["ip", "-j", "addr", "show"]))
    theirs = {
        (i["ifname"], str(ipaddress.ip_address(a["local"])), a["prefixlen"])
        for i in out
        for a in i.get("addr_info", [])
        if "UP" in i.get("flags", []) or i.get("operstate") == "UP"
        if a.get("family") in ("inet", "inet6")
    }
    ours = {(a.name, a.address, a.prefixlen) for a in system_interfaces() if a.up}
    assert theirs <= ours
    assert any(a.loopback and a.address == "127.0.0.1" for a in system_interfaces())
