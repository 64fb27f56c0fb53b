# -*- test-case-name: tests.unit.tls.test_tls_server_identity -*-
"""Server identity of a raft peer: Consul's ``AuthorizeServerConn``, plus the node name.

Raft (legacy inner type byte 1 and native ALPN ``consul/raft``) may only be spoken by this
datacenter's servers. When ``verify_incoming`` (RPC) and ``verify_server_hostname`` are both on,
the RPC port calls :func:`authorize_server_conn` after the TLS handshake and before the raft
handler sees a byte. The peer's leaf certificate must

* verify against the *manual* CA pool (``ca_file``/``ca_path`` only; auto-encrypt and Connect
  roots do not count), with the peer's presented intermediates as untrusted helpers;
* allow client authentication (if it has an extended key usage at all);
* carry the DNS SAN ``server.<dc>.<domain>`` of THIS datacenter;
* carry exactly one node SAN ``<node>.server.<dc>.<domain>``; ``*.server.<dc>.<domain>`` is a
  wildcard node certificate and yields the node ``*`` (any server of this datacenter).

The result is the node name (for ``ConnectionInfo.peer_node``) or the reason for refusing, worded
as Consul's ``a TLS certificate with a CommonName of <expected> is required for this operation``
plus what was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL, crypto

WILDCARD_NODE = "*"


@attrs.frozen
class ServerIdentity:
    """``node`` if the peer is a server of this DC (``*``: wildcard cert), else ``reason``."""

    node: str | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.node is not None


def expected_name(datacenter: str, domain: str) -> str:
    """``server.<dc>.<domain>`` without the domain's trailing dot."""
    d = domain[:-1] if domain.endswith(".") else domain
    return f"server.{datacenter}.{d}".lower()


def _refused(expected: str, detail: str) -> ServerIdentity:
    return ServerIdentity(
        None,
        f"a TLS certificate with a CommonName of {expected} is required for this operation "
        f"({detail})",
    )


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n).lower() for n in ext.get_values_for_type(x509.DNSName)]


def check_certificate(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    manual_cas: Sequence[x509.Certificate],
    datacenter: str,
    domain: str,
) -> ServerIdentity:
    """The rule of the module docstring for one presented chain (sans-IO, for tests too)."""
    expected = expected_name(datacenter, domain)
    if not manual_cas:
        return _refused(expected, "no CA in ca_file/ca_path to verify server certificates")
    store = crypto.X509Store()
    for ca in manual_cas:
        store.add_cert(crypto.X509.from_cryptography(ca))
    chain = [crypto.X509.from_cryptography(c) for c in intermediates]
    try:
        crypto.X509StoreContext(
            store, crypto.X509.from_cryptography(leaf), chain=chain
        ).verify_certificate()
    except crypto.X509StoreContextError as e:
        return _refused(expected, f"not signed by a CA in ca_file/ca_path: {e}")
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        return _refused(expected, "the certificate does not allow client authentication")
    names = _dns_names(leaf)
    shown = ", ".join(names) if names else "no DNS names"
    if expected not in names:
        return _refused(expected, f"the certificate names {shown}")
    suffix = "." + expected
    nodes = sorted({n[: -len(suffix)] for n in names if n.endswith(suffix)})
    nodes = [n for n in nodes if n and "." not in n]
    if not nodes:
        return _refused(expected, f"no node name <node>{suffix} in {shown}")
    if len(nodes) > 1:
        return _refused(expected, f"more than one node name in {shown}")
    return ServerIdentity(nodes[0], None)


def authorize_server_conn(
    handle: Any, manual_cas: Sequence[x509.Certificate], datacenter: str, domain: str
) -> ServerIdentity:
    """:func:`check_certificate` for the peer of a finished server-side ``SSL.Connection``."""
    expected = expected_name(datacenter, domain)
    if not isinstance(handle, SSL.Connection):
        return _refused(expected, "not a TLS connection")
    peer = handle.get_peer_certificate()
    if peer is None:
        return _refused(expected, "no verified chains: the peer presented no certificate")
    leaf = peer.to_cryptography()
    presented = handle.get_peer_cert_chain() or []
    intermediates = [c.to_cryptography() for c in presented]
    intermediates = [c for c in intermediates if c != leaf]
    return check_certificate(leaf, intermediates, manual_cas, datacenter, domain)
