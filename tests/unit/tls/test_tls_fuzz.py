"""Hypothesis: bad PEM input and odd names give clear TLS errors, never a crash.

Example counts are modest by default; set WANFED_FUZZ_EXAMPLES for bigger runs.
"""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanfedtx.testing.pki import PKI
from wanfedtx.tls import certs
from wanfedtx.tls.configurator import TLSConfigurator, TLSSettings
from wanfedtx.tls.errors import TLSError

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_PKI = PKI()
_PAIR = _PKI.server("dc1", "n1")


def _der(pem: bytes) -> bytes:
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    return base64.b64decode(body)


def _pem(der: bytes, label: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        b"-----BEGIN "
        + label
        + b"-----\n"
        + b"\n".join(lines)
        + b"\n-----END "
        + label
        + b"-----\n"
    )


def mutated(pem: bytes, label: bytes) -> st.SearchStrategy[bytes]:
    der = _der(pem)

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(der)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            cut = draw(st.integers(0, len(data)))
            data = data[:cut]
        return _pem(bytes(data), label)

    return build()


pem_inputs = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.binary(max_size=200).map(lambda b: _pem(b, b"CERTIFICATE")),
    st.binary(max_size=200).map(lambda b: _pem(b, b"EC PRIVATE KEY")),
    mutated(_PKI.ca.cert_pem, b"CERTIFICATE"),
    mutated(_PAIR.cert_pem, b"CERTIFICATE"),
    mutated(_PAIR.key_pem, b"EC PRIVATE KEY"),
    st.just(_PAIR.key_pem),
    st.just(_PAIR.cert_pem),
    st.just(_PKI.ca.cert_pem),
)


def _configure(ca: bytes, cert: bytes, key: bytes) -> None:
    try:
        cfg = TLSConfigurator(TLSSettings(ca_pem=ca, cert_pem=cert, key_pem=key))
    except TLSError as e:
        assert str(e)
        return
    # whatever loaded must also build contexts and creators
    cfg.mutual_tls_capable()
    cfg.incoming_alpn_creator(["consul/rpc-multi"])
    cfg.outgoing_alpn_creator("dc1", "n1", "consul/rpc-multi")


@FUZZ
@given(ca=pem_inputs, cert=pem_inputs, key=pem_inputs)
def test_bad_pem_gives_tls_errors(ca: bytes, cert: bytes, key: bytes) -> None:
    _configure(ca, cert, key)


@FUZZ
@given(cert=mutated(_PAIR.cert_pem, b"CERTIFICATE"))
def test_mutated_cert_with_good_key_and_ca(cert: bytes) -> None:
    _configure(_PKI.ca.cert_pem, cert, _PAIR.key_pem)


@FUZZ
@given(ca=mutated(_PKI.ca.cert_pem, b"CERTIFICATE"))
def test_mutated_ca(ca: bytes) -> None:
    _configure(ca, _PAIR.cert_pem, _PAIR.key_pem)


@FUZZ
@given(ca=pem_inputs, key=pem_inputs)
def test_cert_creation_from_bad_ca_files(ca: bytes, key: bytes) -> None:
    try:
        certs.create_cert(certs.CertAndKey(ca, key), "server", node="n1")
    except TLSError as e:
        assert str(e)


names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@FUZZ
@given(
    kind=st.sampled_from(["server", "client", "cli"]),
    dc=names,
    node=names,
    domain=names,
    dns=st.lists(names, max_size=3),
    ips=st.lists(names, max_size=2),
    days=st.integers(-5, 400_000),
)
def test_cert_names_never_crash(
    kind: certs.CertKind,
    dc: str,
    node: str,
    domain: str,
    dns: list[str],
    ips: list[str],
    days: int,
) -> None:
    try:
        pair = certs.create_cert(
            _PKI.ca,
            kind,
            dc=dc,
            node=node,
            domain=domain,
            days=days,
            additional_dnsnames=dns,
            additional_ipaddresses=ips,
        )
    except TLSError as e:
        assert str(e)
        return
    assert pair.certificate.subject.rfc4514_string().startswith("CN=" + kind)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 10, b"-----BEGIN CERTIFICATE-----\n"])
def test_bad_ca_file_message_names_the_file(tmp_path: object, bad: bytes) -> None:
    from pathlib import Path

    p = Path(str(tmp_path)) / "ca.pem"
    p.write_bytes(bad)
    with pytest.raises(TLSError, match=r"ca_file .*ca\.pem"):
        TLSConfigurator(TLSSettings(ca_file=str(p)))
