"""ACLs on the Connect CA RPCs (the ACL unit tests' in-process DCs, default policy deny):
``ConnectCA.Sign`` needs service:write on the CSR's service, ``ConfigurationSet`` and
``SignIntermediate`` operator:write, ``ConfigurationGet`` operator:read, ``Roots`` nothing;
refused requests write nothing. Malformed CSRs and intermediate requests (hypothesis) give a
clear error and change nothing."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acl"))

from acl_support import MASTER, Net

from wanfedtx.acl.model import PermissionDeniedError
from wanfedtx.catalog.errors import EndpointError
from wanfedtx.connect import ca, intermediate
from wanfedtx.connect.server import ConnectCAServer

CID = "11111111-2222-3333-4444-555555555555"
TD = f"{CID}.consul"
RULES = {
    "web": 'service "web" { policy = "write" }',
    "web-read": 'service "web" { policy = "read" }',
    "op-read": 'operator = "read"',
    "op-write": 'operator = "write"',
}


def setup(replication_token: str = MASTER) -> tuple[Net, dict[str, str]]:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    net = Net(clock)
    for dc in ("dc1", "dc2"):
        net.add(dc, "dc1", initial_management=MASTER)
        ConnectCAServer(net.servers[dc], "dc1", {"ClusterID": CID} if dc == "dc1" else {},
                        clock, replication_token=replication_token).setServiceParent(
                            net.servers[dc])
    for dc in ("dc1", "dc2"):
        net.servers[dc].startService()
    secrets = {}
    for name, text in RULES.items():
        net.rpc("dc1", "ACL.PolicySet", {"Token": MASTER, "Policy": {"Name": name, "Rules": text}})
        tok = net.rpc("dc1", "ACL.TokenSet",
                      {"Token": MASTER, "ACLToken": {"Policies": [{"Name": name}]}})
        secrets[name] = tok["SecretID"]
    return net, secrets


@pytest.fixture(scope="module")
def acl_net() -> tuple[Net, dict[str, str]]:
    return setup()


def sign(net: Net, token: str, service: str = "web") -> Any:
    _, csr = ca.make_leaf_csr(TD, "dc1", service)
    return net.rpc("dc1", "ConnectCA.Sign", {"CSR": csr, "Token": token})


def test_sign_needs_service_write(acl_net: tuple[Net, dict[str, str]]) -> None:
    net, s = acl_net
    state = net.servers["dc1"].fsm
    for token in ("", s["web-read"], s["op-write"]):
        before = state.last_applied
        with pytest.raises(PermissionDeniedError):
            sign(net, token)
        assert state.last_applied == before
    with pytest.raises(PermissionDeniedError):
        sign(net, s["web"], service="db")
    net.clock.advance(1)  # a fresh CSRMaxPerSecond slot
    issued = sign(net, s["web"])
    assert issued["Service"] == "web"
    net.clock.advance(1)
    assert sign(net, MASTER, service="db")["Service"] == "db"
    # roots need nothing
    assert net.rpc("dc1", "ConnectCA.Roots", {"Token": ""})["TrustDomain"] == TD


def test_configuration_needs_operator(acl_net: tuple[Net, dict[str, str]]) -> None:
    net, s = acl_net
    body = {"Provider": "consul", "Config": {"LeafCertTTL": "24h"}}
    before = net.servers["dc1"].fsm.last_applied
    for token in ("", s["web"], s["op-read"]):
        with pytest.raises(PermissionDeniedError):
            net.rpc("dc1", "ConnectCA.ConfigurationSet", {"Config": body, "Token": token})
    assert net.servers["dc1"].fsm.last_applied == before
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "ConnectCA.ConfigurationGet", {"Token": s["web"]})
    got = net.rpc("dc1", "ConnectCA.ConfigurationGet", {"Token": s["op-read"]})
    assert got["Config"]["Provider"] == "consul"
    assert net.rpc("dc1", "ConnectCA.ConfigurationSet",
                   {"Config": body, "Token": s["op-write"]}) is True
    _, csr = intermediate.make_intermediate_csr(CID)
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "ConnectCA.SignIntermediate", {"CSR": csr, "Token": s["op-read"]})
    pem = net.rpc("dc1", "ConnectCA.SignIntermediate", {"CSR": csr, "Token": s["op-write"]})
    assert "BEGIN CERTIFICATE" in pem


_CSR_LIKE = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: "-----BEGIN CERTIFICATE REQUEST-----\n"
                                + base64.b64encode(b).decode()
                                + "\n-----END CERTIFICATE REQUEST-----\n"),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(csr=_CSR_LIKE, method=st.sampled_from(["ConnectCA.Sign", "ConnectCA.SignIntermediate"]))
def test_malformed_csrs_give_clear_errors_and_change_nothing(
    acl_net: tuple[Net, dict[str, str]], csr: Any, method: str
) -> None:
    net, _ = acl_net
    before = net.servers["dc1"].fsm.last_applied
    with pytest.raises(EndpointError) as info:
        net.rpc("dc1", method, {"CSR": csr, "Token": MASTER})
    text = str(info.value)
    assert text and "\n" not in text and "Traceback" not in text
    assert net.servers["dc1"].fsm.last_applied == before


@pytest.mark.parametrize("uri", [
    "spiffe://other.consul",
    f"spiffe://{CID}.consul/ns/default/dc/dc1/svc/web",
    "http://x",
])
def test_intermediate_csr_with_a_foreign_or_leaf_uri_is_refused(
    acl_net: tuple[Net, dict[str, str]], uri: str
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    net, _ = acl_net
    key = ca.generate_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                          critical=False)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    before = net.servers["dc1"].fsm.last_applied
    with pytest.raises(EndpointError, match="is not valid for our domain"):
        net.rpc("dc1", "ConnectCA.SignIntermediate", {"CSR": csr, "Token": MASTER})
    # as a leaf CSR: not a service ID of this trust domain, or not a service ID at all
    if "svc" not in uri:
        with pytest.raises(EndpointError, match="SPIFFE ID"):
            net.rpc("dc1", "ConnectCA.Sign", {"CSR": csr, "Token": MASTER})
    assert net.servers["dc1"].fsm.last_applied == before


@pytest.mark.parametrize("token", [MASTER, ""])
def test_secondary_signs_its_intermediate_with_the_replication_token(token: str) -> None:
    net, _ = setup(replication_token=token)
    roots = net.rpc("dc2", "ConnectCA.Roots", {})
    if token:
        (root,) = roots["Roots"]
        assert root["IntermediateCerts"] and roots["TrustDomain"] == TD
    else:  # anonymous: operator:write denied in the primary; nothing stored, retried later
        assert roots["Roots"] == []


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _der(pem: str) -> bytes:
    lines = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    return base64.b64decode("".join(lines))


_VALID_INTER = _der(intermediate.make_intermediate_csr(CID)[1])
_VALID_LEAF = _der(ca.make_leaf_csr(TD, "dc1", "web")[1])


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["inter", "leaf"]),
       token=st.sampled_from([MASTER, "", "web"]),
       cut=st.integers(min_value=0, max_value=600),
       flips=st.lists(st.tuples(st.integers(min_value=0, max_value=599),
                                st.integers(min_value=1, max_value=255)), max_size=4))
def test_mutated_csrs_are_refused_or_signed_never_crash(
    acl_net: tuple[Net, dict[str, str]], which: str, token: str, cut: int,
    flips: list[tuple[int, int]],
) -> None:
    """Truncated or bit-flipped DER of valid CSRs: a clear one-line error and no write, or
    (a flip the signature does not cover, e.g. in padding) a normal answer."""
    net, secrets = acl_net
    token = secrets.get(token, token)
    der = bytearray(_VALID_INTER if which == "inter" else _VALID_LEAF)
    for pos, xor in flips:
        if pos < len(der):
            der[pos] ^= xor
    der = der[:cut] if cut < len(der) else der
    method = "ConnectCA.SignIntermediate" if which == "inter" else "ConnectCA.Sign"
    net.clock.advance(1)
    before = net.servers["dc1"].fsm.last_applied
    try:
        net.rpc("dc1", method, {"CSR": _pem(bytes(der)), "Token": token})
    except (EndpointError, PermissionDeniedError) as exc:
        assert str(exc) and "\n" not in str(exc)
        assert net.servers["dc1"].fsm.last_applied == before
    else:
        assert token == MASTER or (which == "leaf" and token == secrets["web"])
