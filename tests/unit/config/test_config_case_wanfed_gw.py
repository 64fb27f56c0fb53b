"""The reference's case-wanfed-gw config files load to the expected runtime values."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from wanfedtx.config import LoadResult

DATA = Path(__file__).resolve().parents[2] / "data" / "case-wanfed-gw"


def _dc_dir(tmp_path: Path, dc: str) -> Path:
    """<dc>/consul as the reference lays it out: base.hcl, bind.hcl and the DC's files."""
    d = tmp_path / dc / "consul"
    d.mkdir(parents=True)
    shutil.copy(DATA / "base.hcl", d / "base.hcl")
    shutil.copy(DATA / "bind.hcl", d / "bind.hcl")
    for f in (DATA / dc).iterdir():
        shutil.copy(f, d / f.name)
    return d


def _load(loadcfg: Callable[..., LoadResult], tmp_path: Path, dc: str) -> LoadResult:
    # consul agent -dev -datacenter <dc> -config-dir /workdir/<dc>/consul -client 0.0.0.0
    return loadcfg(
        str(_dc_dir(tmp_path, dc)), dev=True, flags={"datacenter": dc, "client_addr": "0.0.0.0"}
    )


def test_primary(loadcfg: Callable[..., LoadResult], tmp_path: Path) -> None:
    res = _load(loadcfg, tmp_path, "primary")
    rt = res.runtime
    assert (rt.node_name, rt.datacenter, rt.primary_datacenter) == ("pri", "primary", "primary")
    assert rt.server_mode and rt.dev_mode
    assert rt.connect_enabled and rt.connect_mesh_gateway_wan_federation_enabled
    assert rt.bind_addr == "0.0.0.0"
    assert rt.advertise_addr_lan == "10.5.0.2"  # {{ GetInterfaceIP "eth0" }} on the fake host
    assert rt.advertise_addr_wan == "10.5.0.2"
    assert rt.primary_gateways == ()
    assert rt.ca_file == "/workdir/primary/tls/consul-agent-ca.pem"
    assert rt.cert_file == "/workdir/primary/tls/primary-server-consul-0.pem"
    assert rt.key_file == "/workdir/primary/tls/primary-server-consul-0-key.pem"
    assert rt.verify_incoming and rt.verify_outgoing and rt.verify_server_hostname
    assert (rt.http_port, rt.grpc_port, rt.server_port) == (8500, 8502, 8300)
    assert (rt.serf_port_lan, rt.serf_port_wan) == (8301, 8302)
    assert rt.http_addrs == (("0.0.0.0", 8500),)
    (gw,) = rt.services
    assert (gw.name, gw.kind, gw.port) == ("mesh-gateway", "mesh-gateway", 4431)
    assert gw.meta == {"consul-wan-federation": "1"}
    assert gw.address == "" and gw.tagged_addresses == {} and gw.checks == ()


def test_secondary(loadcfg: Callable[..., LoadResult], tmp_path: Path) -> None:
    rt = _load(loadcfg, tmp_path, "secondary").runtime
    assert (rt.node_name, rt.datacenter, rt.primary_datacenter) == ("sec", "secondary", "primary")
    assert rt.primary_gateways == ("consul-primary:4431",)
    assert rt.primary_gateways_interval == 5.0
    assert rt.retry_join_wan == ()
    assert rt.services[0].port == 4432
    assert rt.cert_file.endswith("secondary-server-consul-0.pem")
    assert rt.sanitized()["PrimaryGatewaysInterval"] == "5s"


def test_bind_hcl_with_a_real_eth0_in_a_netns(tmp_path: Path) -> None:
    """bind.hcl's template against a real interface named eth0 (a veth in a fresh netns)."""
    ip = shutil.which("ip")
    if ip is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs root and iproute2 for the netns test")
        pytest.skip("needs root and iproute2 to create a network namespace")
    ns = f"wfcfg{uuid.uuid4().hex[:8]}"
    try:
        r = subprocess.run([ip, "netns", "add", ns], capture_output=True, text=True)
        if r.returncode != 0:
            if os.environ.get("CI") == "true":
                pytest.fail(f"ip netns add failed: {r.stderr}")
            pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
        for cmd in (
            ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"],
            ["addr", "add", "10.77.0.5/24", "dev", "eth0"],
            ["link", "set", "eth0", "up"],
            ["link", "set", "eth0p", "up"],
            ["link", "set", "lo", "up"],
        ):
            subprocess.run([ip, "-n", ns, *cmd], check=True)
        d = _dc_dir(tmp_path, "primary")
        code = (
            "from wanfedtx.config import LoadOptions, load;"
            f"rt = load(LoadOptions(config_files=[{str(d)!r}], dev=True,"
            " flags={'datacenter': 'primary'})).runtime;"
            "print(rt.advertise_addr_lan, rt.bind_addr)"
        )
        out = subprocess.run(
            [ip, "netns", "exec", ns, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["10.77.0.5", "0.0.0.0"]
    finally:
        subprocess.run([ip, "netns", "del", ns], capture_output=True)


def test_tls_settings_feed_the_tls_configurator(
    loadcfg: Callable[..., LoadResult], tmp_path: Path
) -> None:
    """The primary's server.hcl, with its TLS files made by our CA code, builds a configurator
    that is mutual-TLS capable and names this server in SNI terms."""
    from wanfedtx.tls.certs import create_ca, create_cert
    from wanfedtx.tls.configurator import TLSConfigurator

    tls = tmp_path / "tls"
    tls.mkdir()
    ca = create_ca()
    cert = create_cert(ca, "server", dc="primary", node="pri")
    (tls / "consul-agent-ca.pem").write_bytes(ca.cert_pem)
    (tls / "primary-server-consul-0.pem").write_bytes(cert.cert_pem)
    (tls / "primary-server-consul-0-key.pem").write_bytes(cert.key_pem)
    d = _dc_dir(tmp_path, "primary")
    server = (d / "server.hcl").read_text().replace("/workdir/primary/tls", str(tls))
    (d / "server.hcl").write_text(server)
    rt = loadcfg(str(d), dev=True, flags={"datacenter": "primary"}).runtime
    settings = rt.tls_settings()
    assert settings.ca_file == str(tls / "consul-agent-ca.pem")
    assert settings.ca_path is None
    assert (settings.node_name, settings.datacenter, settings.domain) == (
        "pri",
        "primary",
        "consul",
    )
    assert settings.verify_incoming and settings.verify_outgoing and settings.verify_server_hostname
    conf = TLSConfigurator(settings)
    assert conf.mutual_tls_capable()
    assert conf.server_sni("secondary", "sec") == "sec.server.secondary.consul"
