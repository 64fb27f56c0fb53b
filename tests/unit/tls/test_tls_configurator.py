"""TLSConfigurator: real OpenSSL handshakes in memory (iosim), names, ALPN, reloads, legacy path."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.logger import LogLevel, globalLogPublisher

from wanfedtx.testing.pki import PKI, Record, handshake_in_memory
from wanfedtx.tls import certs
from wanfedtx.tls.configurator import (
    OutgoingCreator,
    TLSConfigurator,
    TLSSettings,
    check_negotiated_alpn,
    peer_identity_problem,
)
from wanfedtx.tls.errors import (
    ALPNMismatch,
    CertificateVerifyFailed,
    DialError,
    HostnameMismatch,
    PeerIdentityError,
    PEMError,
    TLSConfigError,
)

RPC_NEXT_PROTOS = [
    "consul/rpc-single",
    "consul/raft",
    "consul/rpc-multi",
    "consul/rpc-snapshot",
    "consul/rpc-gossip",
    "consul/wan-gossip/packet",
    "consul/wan-gossip/stream",
]


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


@pytest.fixture(scope="module")
def pri(pki: PKI) -> TLSConfigurator:
    return TLSConfigurator(pki.settings("primary", "pri"))


@pytest.fixture(scope="module")
def sec(pki: PKI) -> TLSConfigurator:
    return TLSConfigurator(pki.settings("secondary", "sec"))


def run(
    server_creator: Any, client_creator: Any, require_alpn: str | None = None
) -> tuple[Record, Record]:
    return handshake_in_memory(server_creator, client_creator, require_alpn)


def test_alpn_handshake_with_node_san_succeeds(pri: TLSConfigurator, sec: TLSConfigurator) -> None:
    server = pri.incoming_alpn_creator(RPC_NEXT_PROTOS)
    client = sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
    assert client is not None and client.sni == "pri.server.primary.consul"
    s, c = run(server, client)
    assert s.handshake_done and c.handshake_done
    assert s.negotiated == c.negotiated == b"consul/rpc-multi"
    assert s.data == b"ping" and c.data == b"ping"


@pytest.mark.parametrize("node", ["", "*"])
def test_wildcard_dial_uses_server_name(
    pri: TLSConfigurator, sec: TLSConfigurator, node: str
) -> None:
    # ServerSNI("primary", "*") == "server.primary.consul", covered by every server cert.
    client = OutgoingCreator(
        sec,
        sni=sec.server_sni("primary", node),
        verify_chain=True,
        verify_name=sec.server_sni("primary", node),
        alpn="consul/wan-gossip/stream",
    )
    _s, c = run(pri.incoming_alpn_creator(RPC_NEXT_PROTOS), client)
    assert c.data == b"ping"
    assert c.negotiated == b"consul/wan-gossip/stream"


def test_wrong_dc_is_a_hostname_error(pri: TLSConfigurator, sec: TLSConfigurator) -> None:
    client = sec.outgoing_alpn_creator("secondary", "pri", "consul/rpc-multi")
    s, c = run(pri.incoming_alpn_creator(RPC_NEXT_PROTOS), client)
    assert not c.handshake_done and not s.handshake_done
    assert c.lost is not None and c.lost.check(HostnameMismatch)
    err = c.lost.value
    assert isinstance(err, HostnameMismatch)
    assert err.expected == "pri.server.secondary.consul"
    assert err.presented == ["pri.server.primary.consul", "server.primary.consul", "localhost"]
    assert "not pri.server.secondary.consul" in str(err)
    assert s.data == b""


def test_missing_node_san_is_a_hostname_error(pki: PKI, sec: TLSConfigurator) -> None:
    no_node = TLSConfigurator(pki.settings("primary", "pri", pair=pki.server("primary")))
    client = sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
    s, c = run(no_node.incoming_alpn_creator(RPC_NEXT_PROTOS), client)
    assert c.lost is not None and c.lost.check(HostnameMismatch)
    assert not c.handshake_done and s.data == b""
    # ...while the wildcard name still works against that cert
    wild = sec.outgoing_alpn_creator("primary", "*", "consul/rpc-multi")
    s, c = run(no_node.incoming_alpn_creator(RPC_NEXT_PROTOS), wild)
    assert c.data == b"ping"


def test_wildcard_node_cert_covers_every_node(pki: PKI, sec: TLSConfigurator) -> None:
    star = TLSConfigurator(pki.settings("primary", "pri", pair=pki.server("primary", "*")))
    client = sec.outgoing_alpn_creator("primary", "anynode", "consul/rpc-multi")
    _s, c = run(star.incoming_alpn_creator(RPC_NEXT_PROTOS), client)
    assert c.data == b"ping"


def test_no_common_alpn_fails_with_reference_message(
    pri: TLSConfigurator, sec: TLSConfigurator
) -> None:
    client = sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
    s, c = run(pri.incoming_alpn_creator(["consul/raft"]), client)
    # As in the reference: the handshake completes without ALPN (no alert), then the dialer
    # refuses the connection and the server sees an empty negotiated protocol.
    assert c.handshake_done and c.negotiated is None
    assert c.alpn_error is not None
    assert str(c.alpn_error) == 'could not negotiate ALPN protocol "consul/rpc-multi" with ""'
    assert c.alpn_error.server_name == "pri.server.primary.consul"
    assert c.data == b"" and s.data == b""
    assert s.handshake_done and s.negotiated is None
    assert s.lost is not None and c.lost is not None


def test_server_picks_in_its_own_preference_order(
    pri: TLSConfigurator, sec: TLSConfigurator
) -> None:
    # A client offering two protocols (not what our dialer does) gets the server's first choice.
    client = sec.outgoing_alpn_creator("primary", "pri", "consul/raft")
    assert client is not None
    ctx = sec._context(
        server=False, alpn_request=("consul/rpc-gossip", "consul/raft"), need_cert=False
    )

    class TwoProtos(OutgoingCreator):
        def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
            conn = super().clientConnectionForTLS(tlsProtocol)
            conn.set_alpn_protos([b"consul/rpc-gossip", b"consul/raft"])
            return conn

    del ctx
    two = TwoProtos(
        sec, sni=client.sni, verify_chain=True, verify_name=client.sni, alpn="consul/raft"
    )
    s, c = run(pri.incoming_alpn_creator(["consul/raft", "consul/rpc-gossip"]), two)
    assert s.negotiated == b"consul/raft" and c.data == b"ping"


def no_cert_client(pki: PKI, max_version: int | None = None) -> OutgoingCreator:
    only_ca = TLSConfigurator(TLSSettings(ca_pem=pki.ca.cert_pem, verify_outgoing=True))
    assert not only_ca.mutual_tls_capable()
    with pytest.raises(DialError, match="when outgoing TLS is disabled"):
        only_ca.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")

    class Limited(OutgoingCreator):
        def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
            if max_version is not None:
                # a fresh configurator: its cached client context has not been used yet
                ctx = self.configurator._context(
                    server=False, alpn_request=(self.alpn,), need_cert=False
                )
                ctx.set_max_proto_version(max_version)
            return super().clientConnectionForTLS(tlsProtocol)

    name = "pri.server.primary.consul"
    return Limited(only_ca, sni=name, verify_chain=True, verify_name=name, alpn="consul/rpc-multi")


@pytest.mark.parametrize("version", [None, SSL.TLS1_2_VERSION], ids=["tls13", "tls12"])
def test_client_without_cert_is_refused(
    pki: PKI, pri: TLSConfigurator, version: int | None
) -> None:
    s, c = run(pri.incoming_alpn_creator(RPC_NEXT_PROTOS), no_cert_client(pki, version))
    assert not s.handshake_done
    assert s.lost is not None and s.lost.check(SSL.Error)
    assert "peer did not return a certificate" in str(
        s.lost.value
    ) or "certificate required" in str(s.lost.value)
    assert s.data == b"" and c.data == b""
    # TLS 1.3: the client finishes its side first and learns of the refusal on the next read.
    assert c.handshake_done == (version is None)
    assert c.lost is not None and c.lost.check(SSL.Error)


@pytest.mark.parametrize(
    ("kind", "accepted"),
    [("cli", False), ("client", False), ("server-other-domain", False), ("server", True)],
)
def test_incoming_alpn_checks_client_names(
    pki: PKI, pri: TLSConfigurator, kind: str, accepted: bool
) -> None:
    if kind == "cli":
        pair = pki.cli("secondary")
    elif kind == "client":
        pair = pki.client("secondary")
    elif kind == "server-other-domain":
        pair = certs.create_cert(pki.ca, "server", dc="secondary", node="sec", domain="example")
    else:
        pair = pki.server("secondary", "sec")
    dialer = TLSConfigurator(pki.settings("secondary", "sec", pair=pair))
    client = dialer.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
    s, c = run(pri.incoming_alpn_creator(RPC_NEXT_PROTOS), client)
    assert (c.data == b"ping") is accepted
    assert s.handshake_done is accepted
    if not accepted:
        assert s.lost is not None and s.lost.check(PeerIdentityError), s.lost
    # client certs are fine when the listener accepts clients
    if kind == "client":
        s, c = run(
            pri.incoming_alpn_creator(RPC_NEXT_PROTOS, accept_peer_kinds=("server", "client")),
            client,
        )
        assert c.data == b"ping"


def test_peer_from_another_ca_is_refused_both_ways(pki: PKI, pri: TLSConfigurator) -> None:
    other = PKI()
    # The stranger trusts both CAs, so only the side that checks the stranger's cert refuses.
    stranger = TLSConfigurator(
        other.settings("secondary", "sec", ca_pem=other.ca.cert_pem + pki.ca.cert_pem)
    )
    # stranger dials us: our server refuses its client cert
    s, c = run(
        pri.incoming_alpn_creator(RPC_NEXT_PROTOS),
        stranger.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi"),
    )
    assert s.lost is not None and s.lost.check(CertificateVerifyFailed), s.lost
    # OpenSSL sends the client's chain with its CA when it can build one, hence either message
    msg = str(s.lost.value)
    assert msg.startswith("client certificate verification failed at depth")
    assert "unable to get local issuer certificate" in msg or "self-signed certificate in" in msg
    assert c.data == b"" and not s.handshake_done
    # we dial the stranger: our client refuses its server cert
    s, c = run(
        stranger.incoming_alpn_creator(RPC_NEXT_PROTOS),
        pri.outgoing_alpn_creator("secondary", "sec", "consul/rpc-multi"),
    )
    assert c.lost is not None and c.lost.check(CertificateVerifyFailed), c.lost
    assert str(c.lost.value).startswith("server certificate verification failed at depth")
    assert not c.handshake_done and s.data == b""


def test_expired_server_cert_is_refused(pki: PKI, sec: TLSConfigurator) -> None:
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired = TLSConfigurator(
        pki.settings("primary", "pri", pair=pki.server("primary", "pri", days=1, now=old))
    )
    _s, c = run(
        expired.incoming_alpn_creator(RPC_NEXT_PROTOS),
        sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi"),
    )
    assert c.lost is not None and c.lost.check(CertificateVerifyFailed)
    assert "certificate has expired" in str(c.lost.value)


# --- reloads --------------------------------------------------------------------------------


def replace_file(path: str, data: bytes) -> None:
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@pytest.fixture
def warnings() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_level") is LogLevel.warn:
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


def test_cert_reload_is_used_by_next_handshake(
    tmp_path: Path, pki: PKI, sec: TLSConfigurator, warnings: list[dict[str, Any]]
) -> None:
    settings = pki.settings("primary", "pri", tmp_path, pair=pki.server("primary"))
    server_cfg = TLSConfigurator(settings)
    creator = server_cfg.incoming_alpn_creator(RPC_NEXT_PROTOS)  # built once, like a listener
    dial = sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
    _, c = run(creator, dial)
    assert c.lost is not None and c.lost.check(HostnameMismatch)  # no node SAN yet

    fixed = pki.server("primary", "pri")
    assert settings.cert_file and settings.key_file
    replace_file(settings.cert_file, fixed.cert_pem)
    replace_file(settings.key_file, fixed.key_pem)
    _, c = run(creator, dial)
    assert c.data == b"ping"

    # a broken file (e.g. half written) is logged and the last good certificate stays in use
    replace_file(settings.cert_file, b"-----BEGIN CERTIFICATE-----\ngarbage\n")
    _s, c = run(creator, dial)
    assert c.data == b"ping"
    assert any("reload failed" in str(e.get("log_format")) for e in warnings)
    assert "not a valid PEM certificate" in warnings[-1]["error"]
    # the bad file is not re-read (nor re-logged) on every handshake...
    _, c = run(creator, dial)
    assert c.data == b"ping"
    assert sum("reload failed" in str(e.get("log_format")) for e in warnings) == 1
    # ...but the next change is picked up: back to a cert without the node SAN
    other = pki.server("primary")
    replace_file(settings.key_file, other.key_pem)
    replace_file(settings.cert_file, other.cert_pem)
    _, c = run(creator, dial)
    assert c.lost is not None and c.lost.check(HostnameMismatch)


def test_ca_reload(tmp_path: Path, pki: PKI) -> None:
    other = PKI()
    settings = pki.settings("primary", "pri", tmp_path)
    creator = TLSConfigurator(settings).incoming_alpn_creator(RPC_NEXT_PROTOS)
    stranger = TLSConfigurator(
        other.settings("secondary", "sec", ca_pem=other.ca.cert_pem + pki.ca.cert_pem)
    )
    dial = stranger.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
    s, c = run(creator, dial)
    assert s.lost is not None and s.lost.check(CertificateVerifyFailed)
    # a CA rotation: the server now trusts both CAs, and the next handshake succeeds
    assert settings.ca_file
    replace_file(settings.ca_file, pki.ca.cert_pem + other.ca.cert_pem)
    s, c = run(creator, dial)
    assert c.data == b"ping" and s.handshake_done


# --- legacy RPC path ---------------------------------------------------------------------------


def legacy(pki: PKI, dc: str, node: str, **kw: Any) -> TLSConfigurator:
    values: dict[str, Any] = {
        "verify_incoming": False,
        "verify_outgoing": False,
        "verify_server_hostname": False,
    }
    values.update(kw)
    return TLSConfigurator(pki.settings(dc, node, **values))


def test_legacy_incoming_without_verify_incoming_accepts_certless_clients(pki: PKI) -> None:
    server = legacy(pki, "dc1", "s1")
    only_ca = TLSConfigurator(TLSSettings(ca_pem=pki.ca.cert_pem, verify_outgoing=True))
    client = only_ca.outgoing_rpc_creator("dc1")
    assert client is not None
    s, c = run(server.incoming_rpc_creator(), client)
    assert c.data == b"ping"
    assert s.negotiated is None


@pytest.mark.parametrize("flag", ["verify_incoming", "verify_incoming_rpc"])
def test_legacy_incoming_with_verify_incoming_requires_a_cert(pki: PKI, flag: str) -> None:
    server = legacy(pki, "dc1", "s1", **{flag: True})
    assert server.verify_incoming_rpc()
    only_ca = TLSConfigurator(TLSSettings(ca_pem=pki.ca.cert_pem, verify_outgoing=True))
    s, c = run(server.incoming_rpc_creator(), only_ca.outgoing_rpc_creator("dc1"))
    assert not s.handshake_done and c.data == b""
    # a client agent's cert is fine on the legacy path
    agent = TLSConfigurator(pki.settings("dc1", "", pair=pki.client("dc1"), verify_incoming=False))
    s, c = run(server.incoming_rpc_creator(), agent.outgoing_rpc_creator("dc1"))
    assert c.data == b"ping"


def test_legacy_outgoing_semantics(pki: PKI) -> None:
    server = legacy(pki, "dc2", "s1")
    with pytest.raises(TLSConfigError, match="verify_outgoing = false"):
        legacy(pki, "dc1", "c1").outgoing_rpc_creator("dc2")
    assert not legacy(pki, "dc1", "c1").outgoing_tls_enabled()

    # verify_outgoing only: the chain is checked but not the name
    chain_only = legacy(pki, "dc1", "c1", verify_outgoing=True)
    creator = chain_only.outgoing_rpc_creator("dc9")
    assert creator is not None and creator.sni is None and creator.verify_name is None
    _, c = run(server.incoming_rpc_creator(), creator)
    assert c.data == b"ping"

    # ... and a server from another CA is refused
    stranger = TLSConfigurator(PKI().settings("dc2", "s1", verify_incoming=False))
    _, c = run(stranger.incoming_rpc_creator(), creator)
    assert c.lost is not None and c.lost.check(CertificateVerifyFailed)

    # verify_server_hostname: server.<dc>.<domain> must match
    strict = legacy(pki, "dc1", "c1", verify_outgoing=True, verify_server_hostname=True)
    ok = strict.outgoing_rpc_creator("dc2")
    assert ok is not None and ok.sni == "server.dc2.consul"
    _, c = run(server.incoming_rpc_creator(), ok)
    assert c.data == b"ping"
    _, c = run(server.incoming_rpc_creator(), strict.outgoing_rpc_creator("dc3"))
    assert c.lost is not None and c.lost.check(HostnameMismatch)
    assert c.lost.value.expected == "server.dc3.consul"  # type: ignore[union-attr]

    # a client agent's cert cannot pose as a server when hostnames are verified
    impostor = TLSConfigurator(
        pki.settings("dc2", "", pair=pki.client("dc2"), verify_incoming=False)
    )
    _s, c = run(impostor.incoming_rpc_creator(), ok)
    assert c.lost is not None and c.lost.check(HostnameMismatch)


# --- pure functions and validation -------------------------------------------------------------


def test_server_sni(pki: PKI) -> None:
    cfg = TLSConfigurator(TLSSettings(domain="consul."))
    assert cfg.server_sni("dc1", "") == "server.dc1.consul"
    assert cfg.server_sni("dc1", "*") == "server.dc1.consul"
    assert cfg.server_sni("dc1", "bob") == "bob.server.dc1.consul"
    assert (
        TLSConfigurator(TLSSettings(domain="example")).server_sni("a", "b") == "b.server.a.example"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "n", "p"), "cannot dial using ALPN-RPC without a target datacenter"),
        (("d", "", "p"), "cannot dial using ALPN-RPC without a target node"),
        (("d", "n", ""), "cannot dial using ALPN-RPC without a target alpn protocol"),
    ],
)
def test_outgoing_alpn_rejects_empty_inputs(
    pri: TLSConfigurator, args: tuple[str, str, str], message: str
) -> None:
    with pytest.raises(DialError) as e:
        pri.outgoing_alpn_creator(*args)
    assert str(e.value) == message


def test_mutual_tls_capable_matrix(pki: PKI) -> None:
    pair = pki.server("dc1", "n1")
    # no CA
    assert not TLSConfigurator(TLSSettings()).mutual_tls_capable()
    assert not TLSConfigurator(
        TLSSettings(cert_pem=pair.cert_pem, key_pem=pair.key_pem)
    ).mutual_tls_capable()
    # CA and no keys
    assert not TLSConfigurator(TLSSettings(ca_pem=pki.ca.cert_pem)).mutual_tls_capable()
    # CA and manual key
    assert TLSConfigurator(
        TLSSettings(ca_pem=pki.ca.cert_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem)
    ).mutual_tls_capable()
    # auto-encrypt CA only
    cfg = TLSConfigurator(TLSSettings())
    cfg.update_auto_encrypt_ca([pki.ca.cert_pem])
    assert not cfg.mutual_tls_capable()
    # auto-encrypt CA and cert
    cfg.update_auto_encrypt([pki.ca.cert_pem], pair.cert_pem, pair.key_pem)
    assert cfg.mutual_tls_capable()


def test_auto_encrypt_material_is_used_for_dialing(pki: PKI, pri: TLSConfigurator) -> None:
    cfg = TLSConfigurator(TLSSettings())
    with pytest.raises(DialError, match="when outgoing TLS is disabled"):
        cfg.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
    cfg.update_auto_encrypt([pki.ca.cert_pem], *astuple(pki.server("secondary", "sec")))
    _s, c = run(
        pri.incoming_alpn_creator(RPC_NEXT_PROTOS),
        cfg.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi"),
    )
    assert c.data == b"ping"


def astuple(pair: certs.CertAndKey) -> tuple[bytes, bytes]:
    return pair.cert_pem, pair.key_pem


def test_check_negotiated_alpn_on_connections(pri: TLSConfigurator) -> None:
    conn = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
    conn.set_tlsext_host_name(b"pri.server.primary.consul")
    with pytest.raises(ALPNMismatch) as e:
        check_negotiated_alpn(conn, "consul/raft")
    assert str(e.value) == 'could not negotiate ALPN protocol "consul/raft" with ""'
    assert e.value.negotiated == ""
    assert e.value.server_name == "pri.server.primary.consul"

    class FakeTLS:
        negotiatedProtocol = b"consul/raft"

    check_negotiated_alpn(FakeTLS(), "consul/raft")
    with pytest.raises(ALPNMismatch, match=r'"consul/rpc-multi" with "consul/raft"$'):
        check_negotiated_alpn(FakeTLS(), "consul/rpc-multi")


def test_peer_identity_rule(pki: PKI) -> None:
    def problem(pair: certs.CertAndKey, kinds: tuple[str, ...] = ("server",)) -> str | None:
        return peer_identity_problem(pair.certificate, "consul.", kinds)

    assert problem(pki.server("dc1")) is None
    assert problem(pki.server("dc1", "n1")) is None
    assert problem(pki.server("dc1", "*")) is None
    assert problem(pki.client("dc1")) is not None
    assert problem(pki.client("dc1"), ("server", "client")) is None
    p = problem(pki.cli("dc1"), ("server", "client"))
    assert p is not None and "cli.dc1.consul" in p
    other = certs.create_cert(pki.ca, "server", domain="example")
    assert problem(other) is not None
    sneaky = certs.create_cert(
        pki.ca, "client", dc="dc1", additional_dnsnames=["server.dc1.consul.evil.com"]
    )
    assert problem(sneaky) is not None


def test_validation_errors(tmp_path: Path, pki: PKI) -> None:
    pair = pki.server("dc1", "n1")
    with pytest.raises(
        TLSConfigError, match=r"^VerifyOutgoing set, and no CA certificate provided!"
    ):
        TLSConfigurator(TLSSettings(verify_outgoing=True))
    with pytest.raises(
        TLSConfigError, match=r"^VerifyIncoming set, and no CA certificate provided!"
    ):
        TLSConfigurator(TLSSettings(verify_incoming_rpc=True))
    with pytest.raises(
        TLSConfigError, match=r"^VerifyIncoming set, and no Cert/Key pair provided!"
    ):
        TLSConfigurator(TLSSettings(verify_incoming=True, ca_pem=pki.ca.cert_pem))
    with pytest.raises(TLSConfigError, match="cert_file is set but key_file is not"):
        TLSConfigurator(TLSSettings(cert_pem=pair.cert_pem))
    with pytest.raises(TLSConfigError, match="key_file is set but cert_file is not"):
        TLSConfigurator(TLSSettings(key_file=str(tmp_path / "k.pem")))
    with pytest.raises(TLSConfigError, match="does not match the certificate"):
        TLSConfigurator(TLSSettings(cert_pem=pair.cert_pem, key_pem=pki.server("dc1").key_pem))
    with pytest.raises(PEMError, match=r"ca_file .*nope.pem: cannot read it: No such file"):
        TLSConfigurator(TLSSettings(ca_file=str(tmp_path / "nope.pem")))
    (tmp_path / "bad.pem").write_bytes(b"hello")
    with pytest.raises(PEMError, match="no PEM-encoded CERTIFICATE block found"):
        TLSConfigurator(TLSSettings(ca_file=str(tmp_path / "bad.pem")))
    with pytest.raises(TLSConfigError, match="TLSMinVersion: value tls10 not supported"):
        TLSConfigurator(TLSSettings(tls_min_version="tls10"))
    with pytest.raises(PEMError, match="no CAs found"):
        (tmp_path / "empty").mkdir()
        TLSConfigurator(TLSSettings(ca_path=str(tmp_path / "empty")))
    with pytest.raises(TLSConfigError, match="needs a certificate"):
        TLSConfigurator(TLSSettings(ca_pem=pki.ca.cert_pem)).incoming_alpn_creator(["x"])


def test_ca_path_loads_every_file(tmp_path: Path, pki: PKI) -> None:
    other = PKI()
    d = tmp_path / "cas"
    (d / "sub").mkdir(parents=True)
    (d / "a.pem").write_bytes(pki.ca.cert_pem)
    (d / "sub" / "b.crt").write_bytes(other.ca.cert_pem)
    pair = pki.server("dc1", "n1")
    cfg = TLSConfigurator(TLSSettings(ca_path=str(d), cert_pem=pair.cert_pem, key_pem=pair.key_pem))
    assert len(cfg._all_cas()) == 2
    # ca_file wins over ca_path, as in Consul
    (tmp_path / "ca.pem").write_bytes(pki.ca.cert_pem)
    cfg = TLSConfigurator(TLSSettings(ca_file=str(tmp_path / "ca.pem"), ca_path=str(d)))
    assert len(cfg._all_cas()) == 1


def test_insecure_rpc_creator_never_asks_for_client_certs(pki: PKI) -> None:
    server = legacy(pki, "dc1", "s1", verify_incoming=True)
    only_ca = TLSConfigurator(TLSSettings(ca_pem=pki.ca.cert_pem, verify_outgoing=True))
    s, c = run(server.incoming_insecure_rpc_creator(), only_ca.outgoing_rpc_creator("dc1", "s1"))
    assert c.data == b"ping" and s.handshake_done
    # while the secure legacy listener of the same agent refuses that client
    s, c = run(server.incoming_rpc_creator(), only_ca.outgoing_rpc_creator("dc1", "s1"))
    assert not s.handshake_done and c.data == b""


