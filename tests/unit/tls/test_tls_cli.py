"""``wanfed tls ca create`` / ``wanfed tls cert create`` end to end through ``main()``."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509

from wanfedtx.cli.main import main
from wanfedtx.tls import certs


def span(c: x509.Certificate) -> datetime.timedelta:
    before, after = certs.validity(c)
    return after - before


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def dns(path: Path) -> list[str]:
    c = x509.load_pem_x509_certificate(path.read_bytes())
    return c.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


def test_case_wanfed_gw_global_setup(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The three commands of case-wanfed-gw's global-setup.sh produce the reference's files."""
    rc, out, err = run(capsys, "tls", "ca", "create")
    assert (rc, err) == (0, "")
    assert out == "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n"
    rc, out, err = run(capsys, "tls", "cert", "create", "-dc=primary", "-server", "-node=pri")
    assert (rc, err) == (0, "")
    assert out.startswith("==> WARNING: Server Certificates grants authority to become a\n")
    assert out.endswith(
        "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n"
        "==> Saved primary-server-consul-0.pem\n"
        "==> Saved primary-server-consul-0-key.pem\n"
    )
    rc, out, err = run(
        capsys, "tls", "cert", "create", "-dc", "secondary", "-server", "-node", "sec"
    )
    assert rc == 0
    assert sorted(p.name for p in cwd.iterdir()) == [
        "consul-agent-ca-key.pem",
        "consul-agent-ca.pem",
        "primary-server-consul-0-key.pem",
        "primary-server-consul-0.pem",
        "secondary-server-consul-0-key.pem",
        "secondary-server-consul-0.pem",
    ]
    for key in cwd.glob("*-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert dns(cwd / "primary-server-consul-0.pem") == [
        "pri.server.primary.consul",
        "server.primary.consul",
        "localhost",
    ]
    assert dns(cwd / "secondary-server-consul-0.pem") == [
        "sec.server.secondary.consul",
        "server.secondary.consul",
        "localhost",
    ]
    ca = x509.load_pem_x509_certificate((cwd / "consul-agent-ca.pem").read_bytes())
    for name in ("primary-server-consul-0.pem", "secondary-server-consul-0.pem"):
        c = x509.load_pem_x509_certificate((cwd / name).read_bytes())
        c.verify_directly_issued_by(ca)
        assert span(c) == datetime.timedelta(days=365)
    assert span(ca) == datetime.timedelta(days=1825)


def test_second_cert_gets_next_index_and_flags(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "tls", "ca", "create", "-domain", "example", "-days", "30")[0] == 0
    assert (cwd / "example-agent-ca.pem").exists()
    rc, out, _ = run(
        capsys,
        "tls",
        "cert",
        "create",
        "-client",
        "-domain=example",
        "-days=7",
        "-additional-dnsname",
        "a.example",
        "-additional-dnsname=b.example",
        "-additional-ipaddress",
        "10.1.2.3",
    )
    assert rc == 0
    assert "WARNING" not in out
    assert "==> Using example-agent-ca.pem and example-agent-ca-key.pem\n" in out
    p = cwd / "dc1-client-example-0.pem"
    assert dns(p) == ["a.example", "b.example", "client.dc1.example", "localhost"]
    c = x509.load_pem_x509_certificate(p.read_bytes())
    assert span(c) == datetime.timedelta(days=7)
    assert run(capsys, "tls", "cert", "create", "-client", "-domain=example")[0] == 0
    assert (cwd / "dc1-client-example-1.pem").exists()
    assert run(capsys, "tls", "cert", "create", "-cli", "--domain", "example")[0] == 0
    assert (cwd / "dc1-cli-example-0-key.pem").exists()


def test_explicit_ca_and_key_paths(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sub = cwd / "ca"
    sub.mkdir()
    certs.write_ca(certs.create_ca(), sub)
    rc, out, err = run(
        capsys,
        "tls",
        "cert",
        "create",
        "-server",
        "-ca",
        "ca/consul-agent-ca.pem",
        "-key",
        "ca/consul-agent-ca-key.pem",
    )
    assert (rc, err) == (0, "")
    assert "==> Using ca/consul-agent-ca.pem and ca/consul-agent-ca-key.pem" in out
    assert (cwd / "dc1-server-consul-0.pem").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-client", "-node", "n1"], "-node requires -server"),
        (["-cli", "-node=n1"], "-node requires -server"),
        ([], "Please provide either -server, -client, or -cli"),
        (["-server", "-client"], "Please provide either -server, -client, or -cli"),
        (["-server", "-client", "-cli"], "Please provide either -server, -client, or -cli"),
        (["-server", "-ca="], "Please provide the ca"),
        (["-server", "-key="], "Please provide the key"),
        (["-server", "-dc", "bad.dc"], "invalid -dc 'bad.dc'"),
        (["-server", "-additional-ipaddress", "nope"], "invalid IP address 'nope'"),
    ],
)
def test_cert_create_errors(
    cwd: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    certs.write_ca(certs.create_ca(), cwd)
    rc, out, err = run(capsys, "tls", "cert", "create", *argv)
    assert rc == 1
    assert out == ""
    assert err.splitlines()[0].startswith(message)
    assert "Traceback" not in err
    assert sorted(p.name for p in cwd.iterdir()) == [
        "consul-agent-ca-key.pem",
        "consul-agent-ca.pem",
    ]


def test_cert_create_without_ca(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "tls", "cert", "create", "-server")
    assert rc == 1
    assert err.startswith("Error reading CA: ")
    assert "consul-agent-ca.pem" in err
    assert list(cwd.iterdir()) == []


def test_cert_create_with_bad_ca_pem(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "consul-agent-ca.pem").write_text("not a cert\n")
    (cwd / "consul-agent-ca-key.pem").write_text("not a key\n")
    rc, _, err = run(capsys, "tls", "cert", "create", "-server")
    assert rc == 1
    assert "CA certificate consul-agent-ca.pem: no PEM-encoded CERTIFICATE block found" in err


def test_ca_create_refuses_to_overwrite(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "tls", "ca", "create")[0] == 0
    before = (cwd / "consul-agent-ca.pem").read_bytes()
    rc, out, err = run(capsys, "tls", "ca", "create")
    assert (rc, out, err) == (1, "", "consul-agent-ca.pem already exists.\n")
    assert (cwd / "consul-agent-ca.pem").read_bytes() == before
    (cwd / "consul-agent-ca.pem").unlink()
    rc, out, err = run(capsys, "tls", "ca", "create")
    assert (rc, err) == (1, "consul-agent-ca-key.pem already exists.\n")


def test_ca_create_common_name_and_constraint(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, _ = run(
        capsys,
        "tls",
        "ca",
        "create",
        "-common-name",
        "Test CA",
        "-name-constraint",
        "-additional-name-constraint",
        "ui.example",
    )
    assert rc == 0
    c = x509.load_pem_x509_certificate((cwd / "consul-agent-ca.pem").read_bytes())
    assert "CN=Test CA" in c.subject.rfc4514_string()
    nc = c.extensions.get_extension_for_class(x509.NameConstraints).value
    assert [g.value for g in nc.permitted_subtrees or []] == ["ui.example", "consul", "localhost"]


def test_ca_create_bad_days(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "tls", "ca", "create", "-days", "0")
    assert rc == 1 and "-days must be at least 1" in err
    assert list(cwd.iterdir()) == []


def test_tls_without_subcommand_prints_help(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "tls")
    assert rc == 1 and "SUBCOMMAND" in err
    rc, _, err = run(capsys, "tls", "cert")
    assert rc == 1 and "create" in err


def test_cli_certs_work_for_case_wanfed_gw(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """global-setup.sh's three commands, then server.hcl's TLS settings: the servers handshake
    with the right node SAN, and a dial naming the wrong node is a hostname error."""
    from wanfedtx.testing.pki import handshake_in_memory
    from wanfedtx.tls.configurator import TLSConfigurator, TLSSettings
    from wanfedtx.tls.errors import HostnameMismatch

    assert main(["tls", "ca", "create"]) == 0
    assert main(["tls", "cert", "create", "-dc=primary", "-server", "-node=pri"]) == 0
    assert main(["tls", "cert", "create", "-dc=secondary", "-server", "-node=sec"]) == 0
    capsys.readouterr()

    def server(dc: str, node: str) -> TLSConfigurator:
        return TLSConfigurator(
            TLSSettings(
                ca_file=str(cwd / "consul-agent-ca.pem"),
                cert_file=str(cwd / f"{dc}-server-consul-0.pem"),
                key_file=str(cwd / f"{dc}-server-consul-0-key.pem"),
                verify_incoming=True,
                verify_outgoing=True,
                verify_server_hostname=True,
                node_name=node,
                datacenter=dc,
            )
        )

    pri, sec = server("primary", "pri"), server("secondary", "sec")
    assert pri.mutual_tls_capable() and sec.mutual_tls_capable()
    protos = ["consul/rpc-multi", "consul/wan-gossip/stream"]
    s, c = handshake_in_memory(
        pri.incoming_alpn_creator(protos), sec.outgoing_alpn_creator("primary", "pri", protos[0])
    )
    assert c.data == b"ping" and s.negotiated == b"consul/rpc-multi"
    s, c = handshake_in_memory(
        sec.incoming_alpn_creator(protos), pri.outgoing_alpn_creator("secondary", "*", protos[1])
    )
    assert c.data == b"ping" and s.negotiated == b"consul/wan-gossip/stream"
    s, c = handshake_in_memory(
        sec.incoming_alpn_creator(protos), pri.outgoing_alpn_creator("secondary", "pri", protos[0])
    )
    assert c.lost is not None and c.lost.check(HostnameMismatch)
