# -*- test-case-name: tests.unit.tls.test_tls_certs,tests.unit.tls.test_tls_cli -*-
"""Exceptions raised by :mod:`wanfedtx.tls` (one module for the whole package).

Every message says what was wrong and, where it helps, what to do about it. Strings that the
reference (Consul) prints are kept word for word.
"""

from __future__ import annotations


class TLSError(Exception):
    """Base class of every error raised by :mod:`wanfedtx.tls`."""


class CertificateError(TLSError, ValueError):
    """Bad input to certificate creation (flags, names, addresses, days)."""


class NodeRequiresServer(CertificateError):
    """``-node`` was given for a client or cli certificate."""

    def __init__(self) -> None:
        super().__init__("-node requires -server")


class FileExists(TLSError, FileExistsError):
    """Refusing to overwrite a certificate or key file that already exists."""


class PEMError(TLSError, ValueError):
    """A PEM file or value could not be used (unreadable, wrong type, not a certificate/key)."""


class TLSConfigError(TLSError, ValueError):
    """TLS settings that cannot produce a working context (e.g. a cert without its key)."""


class DialError(TLSError, ValueError):
    """An outgoing ALPN dial was asked for with missing inputs (reference wording)."""


class HostnameMismatch(TLSError):
    """The peer's certificate does not cover the name we dialled (Go's ``x509.HostnameError``)."""

    def __init__(self, expected: str, presented: list[str]) -> None:
        self.expected = expected
        self.presented = presented
        names = ", ".join(presented) if presented else "no DNS names"
        super().__init__(
            f"x509: certificate is valid for {names}, not {expected}: "
            "the peer's certificate must carry this name as a DNS SAN "
            "(create it with `wanfed tls cert create -server -dc <dc> -node <node>`)"
        )


class ALPNMismatch(TLSError):
    """The TLS handshake did not settle on the wanted ALPN protocol.

    The message is the reference's ``could not negotiate ALPN protocol %q with %q``: the wanted
    protocol and the one the server picked ("" for none). ``server_name`` is the SNI dialled.
    """

    def __init__(self, wanted: str, negotiated: str, server_name: str = "") -> None:
        self.wanted = wanted
        self.negotiated = negotiated
        self.server_name = server_name
        super().__init__(
            f"could not negotiate ALPN protocol {go_quote(wanted)} with {go_quote(negotiated)}"
        )


class CertificateVerifyFailed(TLSError):
    """The peer's certificate chain did not verify against our CAs (expired, unknown CA, ...)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class PeerIdentityError(TLSError):
    """An incoming peer presented a certificate whose names we do not accept."""


def go_quote(s: str) -> str:
    """Quote ``s`` like Go's ``%q`` verb does for printable text (double quotes, escapes)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
