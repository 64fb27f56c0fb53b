# -*- test-case-name: tests.unit.connect.test_connect_ca_secondary -*-
"""Sans-IO intermediate CA work between a secondary datacenter and the primary.

A secondary's leader makes an EC P-256 key and a CSR (CN ``sec-<uid>.consul.ca.<cid8>.consul``,
URI ``spiffe://<cid>.consul``, a critical basicConstraints CA:true pathlen 0); the primary
checks it (:func:`check_intermediate_csr`: zero URIs, or one equal to its signing ID) and signs
(:func:`sign_intermediate`: pathlen 0, valid from now - 1 minute for the primary's
``IntermediateCertTTL``, SKI of the CSR key, AKI of the root key). The secondary checks the
answer before using it (:func:`check_intermediate`), in the reference's order and words.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from wanfedtx.connect import ca
from wanfedtx.connect.errors import CAError, CSRError


def make_intermediate_csr(cluster_id: str) -> tuple[str, str]:
    """(key PEM, CSR PEM) of a new intermediate for the primary's cluster ``cluster_id``."""
    key = ca.generate_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, ca.ca_cn(False, cluster_id))]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(ca.signing_id(cluster_id))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return ca.key_pem(key), csr.public_bytes(serialization.Encoding.PEM).decode()


def check_intermediate_csr(csr_pem: str, cluster_id: str) -> x509.CertificateSigningRequest:
    csr = ca.parse_csr(csr_pem)
    uris = ca.csr_uris(csr)
    if len(uris) > 1:
        raise CSRError(f"incoming CSR has unexpected number of URIs: {len(uris)}")
    ours = ca.signing_id(cluster_id)
    if uris and uris[0].lower() != ours:
        raise CSRError(f'incoming CSR domain "{uris[0]}" is not valid for our domain "{ours}"')
    pub = csr.public_key()
    if not isinstance(pub, ca.PublicKey):
        raise CSRError(f"invalid key type: {type(pub).__name__}")
    return csr


def sign_intermediate(
    csr_pem: str,
    root_key_pem: str,
    root_pem: str,
    cluster_id: str,
    serial: int,
    now: datetime.datetime,
    ttl: datetime.timedelta,
) -> str:
    """The primary signs a secondary's intermediate CSR (PEM)."""
    csr = check_intermediate_csr(csr_pem, cluster_id)
    pub = csr.public_key()
    if not isinstance(pub, ca.PublicKey):
        raise CSRError(f"invalid key type: {type(pub).__name__}")
    root_key = ca.load_key(root_key_pem)
    root = ca.load_cert(root_pem)
    start = now - ca.BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(root.subject)
        .public_key(pub)
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca._ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(ca.key_id(pub)), critical=False)
        .add_extension(ca._aki(ca.key_id(root_key.public_key())), critical=False)
    )
    uris = ca.csr_uris(csr)
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return ca.cert_pem(builder.sign(root_key, hashes.SHA256()))


def check_intermediate(inter_pem: str, key_pem: str, root_pem: str, cluster_id: str) -> None:
    """The secondary's checks of a signed intermediate (the reference's ``SetIntermediate``)."""
    inter = ca.load_cert(inter_pem)
    key = ca.load_key(key_pem)
    if ca.key_id(key.public_key()) != ca.key_id(ca._ec_public(inter)):
        raise CAError("intermediate cert is for a different private key")
    if not ca.is_ca_cert(inter):
        raise CAError("intermediate is not a CA certificate")
    try:
        san = inter.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        uris = []
    if len(uris) != 1:
        raise CAError(f"incoming intermediate cert has unexpected number of URIs: {len(uris)}")
    ours = ca.signing_id(cluster_id)
    if uris[0].lower() != ours:
        raise CAError(f'incoming cert URI "{uris[0]}" does not match current URI: "{ours}"')
    if not ca.verify_signed_by(inter_pem, root_pem):
        raise CAError("could not verify intermediate cert against root: bad signature")


def intermediate_key_id(inter_pem: str) -> str:
    return ca.hex_string(ca.key_id(ca._ec_public(ca.load_cert(inter_pem))))
