# -*- test-case-name: tests.unit.tls.test_tls_configurator -*-
"""Checking the TLS peer: certificate names (server/client identity), ALPN and verify errors.

``peer_identity_problem`` says why a peer certificate does not name an agent of the domain;
``check_negotiated_alpn`` raises ``ALPNMismatch`` after the handshake; ``_verify_error`` turns
OpenSSL's verify codes into ``CertificateVerifyFailed``; ``_ConnState`` fails one handshake from
a verify callback. Used by the connection creators (``tls/creators.py``).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.python.failure import Failure

from wanfedtx.tls.errors import (
    ALPNMismatch,
    CertificateVerifyFailed,
    PeerIdentityError,
)

#: Peer kinds :func:`peer_identity_problem` knows.
PEER_KINDS = ("server", "client")


def _strip_dot(domain: str) -> str:
    return domain[:-1] if domain.endswith(".") else domain


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in ext.get_values_for_type(x509.DNSName)]


def peer_identity_problem(
    cert: x509.Certificate, domain: str, kinds: Sequence[str] = ("server",)
) -> str | None:
    """Why ``cert`` is not an acceptable peer identity, or ``None`` when it is.

    The rule (docs/decisions.md): the chain was already verified against our CAs; in addition one
    DNS SAN must name an agent of our ``domain`` of an accepted kind, in any datacenter:
    ``server.<dc>.<domain>`` or ``<node>.server.<dc>.<domain>`` for ``"server"``, and
    ``client.<dc>.<domain>`` for ``"client"``. CLI certs (``cli.<dc>.<domain>``) and certs of
    other domains are refused. Only SANs count, never the CN (as service_identity and Go do).
    """
    d = re.escape(_strip_dot(domain).lower())
    label = r"[a-z0-9_-]+"
    patterns = []
    if "server" in kinds:
        patterns.append(re.compile(rf"^(?:(?:{label}|\*)\.)?server\.{label}\.{d}$"))
    if "client" in kinds:
        patterns.append(re.compile(rf"^client\.{label}\.{d}$"))
    names = _dns_names(cert)
    for n in names:
        if any(p.match(n.lower()) for p in patterns):
            return None
    want = " or ".join(
        {
            "server": f"server.<dc>.{_strip_dot(domain)} / <node>.server.<dc>.{_strip_dot(domain)}",
            "client": f"client.<dc>.{_strip_dot(domain)}",
        }[k]
        for k in kinds
    )
    shown = ", ".join(names) if names else "no DNS names"
    return (
        f"peer certificate ({shown}) is not a {'/'.join(kinds)} certificate of domain "
        f"{_strip_dot(domain)!r}: it needs a DNS SAN {want}"
    )


def verify_peer_identity(
    tls_connection: SSL.Connection, domain: str, kinds: Sequence[str] = ("server",)
) -> None:
    """Raise :class:`PeerIdentityError` unless the connected peer's cert passes the name rule.

    The incoming creators already run this check inside the handshake; this function is for code
    that holds a finished connection (e.g. ``transport.getHandle()``).
    """
    peer = tls_connection.get_peer_certificate()
    if peer is None:
        raise PeerIdentityError("the peer presented no certificate")
    problem = peer_identity_problem(peer.to_cryptography(), domain, kinds)
    if problem is not None:
        raise PeerIdentityError(problem)


def negotiated_alpn(tls: Any) -> str:
    """The negotiated ALPN protocol ("" when none) of a TLS transport or ``SSL.Connection``."""
    raw: bytes | None
    if isinstance(tls, SSL.Connection):
        raw = tls.get_alpn_proto_negotiated()
    else:
        raw = getattr(tls, "negotiatedProtocol", None)
    return (raw or b"").decode("ascii", "replace")


def check_negotiated_alpn(tls: Any, wanted: str) -> None:
    """Raise :class:`ALPNMismatch` unless ``wanted`` was negotiated on ``tls``.

    Call it from the client protocol's ``handshakeCompleted`` (then abort the connection): as in
    the reference, the handshake itself completes without a common ALPN protocol, and the dialer
    refuses the connection afterwards. ``tls`` is a ``TLSMemoryBIOProtocol`` (a Twisted TLS
    transport) or an ``SSL.Connection``. The message is the reference's ``could not negotiate
    ALPN protocol %q with %q`` with the wanted and the negotiated protocol ("" for none).
    """
    got = negotiated_alpn(tls)
    if got == wanted:
        return
    conn = tls if isinstance(tls, SSL.Connection) else _handle(tls)
    sni = conn.get_servername() if conn is not None else None
    raise ALPNMismatch(wanted, got, (sni or b"").decode("ascii", "replace"))


def _handle(transport: Any) -> SSL.Connection | None:
    get = getattr(transport, "getHandle", None)
    if get is None:
        return None
    h = get()
    return h if isinstance(h, SSL.Connection) else None


_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate (not signed by a CA in ca_file/ca_path)",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose (wrong extended key usage)",
}


def _verify_error(role: str, err: int, depth: int, cert: crypto.X509) -> CertificateVerifyFailed:
    reason = _VERIFY_ERRORS.get(err, f"X509 verify error {err}")
    try:
        subject = cert.to_cryptography().subject.rfc4514_string()
    except Exception:  # pragma: no cover - defensive: parse failure of a peer cert
        subject = "<unparseable>"
    return CertificateVerifyFailed(
        f"{role} certificate verification failed at depth {depth} ({subject}): {reason}; "
        "check that both sides use certificates signed by the same agent CA",
        code=err,
    )


class _ConnState:
    """Per-connection bookkeeping for the verify callbacks.

    It holds the TLS protocol weakly: the protocol owns the ``SSL.Connection``, which owns the
    callback, which owns this state, so a strong reference would make a cycle per connection.
    """

    def __init__(self, protocol: Any) -> None:
        try:
            self._protocol: Callable[[], Any] = weakref.ref(protocol)
        except TypeError:  # not weak-referenceable (e.g. None in direct tests)
            self._protocol = lambda: protocol
        self.failed = False

    def fail(self, exc: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        proto = self._protocol()
        if proto is not None and hasattr(proto, "failVerification"):
            try:
                raise exc
            except BaseException:
                proto.failVerification(Failure())

