# -*- test-case-name: tests.security.test_security_rpc_matrix -*-
"""What the :8300 port logs when it refuses a connection: the reference's messages, one
rate-limit reason per cause, and the peer as ``host:port``.

Every line an unauthenticated peer can cause is written through ``wanfedtx.ratelog.RateLimitedLog``
with ``reason`` (one of ``REASON_*``) and ``peer``; ``log_format`` builds the format string (the
reference's text first, so operators can grep for Consul's wording).
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

from wanfedtx.hostport import address_text
from wanfedtx.rpc import sniff

MSG_DETECTED_TLS = "detected actual TLS over RPC port"
MSG_FIRST_BYTE = "failed to read first byte"
MSG_HANDSHAKE_FAILED = "TLS handshake failed"
MSG_ACCEPTED_NATIVE = "accepted nativeTLS RPC"
MSG_UNKNOWN_ALPN = "discarding RPC for unknown negotiated protocol"
MSG_TLS_NOT_CONFIGURED = "TLS connection attempted but TLS is not configured on this server"
MSG_CONN_LIMIT = "rejecting RPC conn from because rpc_max_conns_per_client exceeded"
MSG_RAFT_REFUSED = "refusing raft RPC"
MSG_RAFT_PLAINTEXT = (
    "raft on the RPC port is UNAUTHENTICATED: verify_incoming is off, so anyone who reaches "
    "this port can speak raft (plaintext type byte 1) and rewrite the cluster state; turn on "
    "verify_incoming, verify_outgoing and verify_server_hostname"
)
MSG_RAFT_ANY_CERT = (
    "raft on the RPC port accepts ANY certificate signed by the CA (clients and servers of every "
    "datacenter): verify_incoming is on but verify_server_hostname is off; turn on "
    "verify_server_hostname so that only this datacenter's servers speak raft"
)

# Rate-limit reasons of rejection lines (one budget each).
REASON_FIRST_BYTE_TIMEOUT = "first-byte-timeout"
REASON_TLS_TIMEOUT = "tls-handshake-timeout"
REASON_TLS_FAILED = "tls-handshake"
REASON_MISSING_CERT = "missing-certificate"
REASON_WRONG_NAME = "wrong-name"
REASON_BAD_CERT = "bad-certificate"
REASON_NON_TLS = "non-tls"
REASON_BAD_BYTE = "bad-first-byte"
REASON_NESTED_TLS = "nested-tls"
REASON_UNKNOWN_ALPN = "unknown-alpn"
REASON_TLS_NOT_CONFIGURED = "tls-not-configured"
REASON_CONN_LIMIT = "conn-limit"
REASON_RAFT_IDENTITY = "raft-identity"

SNIFF_REASONS = {
    sniff.MSG_NON_TLS_VERIFY_INCOMING: REASON_NON_TLS,
    sniff.MSG_UNRECOGNIZED: REASON_BAD_BYTE,
    sniff.MSG_NESTED_TLS: REASON_NESTED_TLS,
}


def peer_address(transport: Any) -> str:
    """``host:port`` of the peer (``[host]:port`` for IPv6), as Consul's ``from=`` shows it."""
    try:
        addr = transport.getPeer()
    except Exception:
        return "?"
    text = address_text(addr)
    return str(addr) if text == "?" else text


def peer_host(transport: Any) -> str | None:
    """The peer's IP address (None for transports without one, e.g. UNIX sockets)."""
    try:
        host = transport.getPeer().host
    except Exception:
        return None
    return host if isinstance(host, str) else None


def log_format(message: str, fields: dict[str, Any]) -> str:
    """The log format: the reference's ``message``, then the peer, the reason and ``fields``.

    ``fields`` with ``raw`` means ``message`` already is a format (the flag is removed)."""
    if fields.pop("raw", False):
        return message + " reason={reason}"
    extra = "".join(f" {k}={{{k}}}" for k in fields)
    return message + ": from={peer} reason={reason}" + extra


def handshake_reason(reason: Failure) -> str:
    """The rate-limit reason of a failed TLS handshake."""
    name = type(reason.value).__name__
    text = reason.getErrorMessage().lower()
    if name == "PeerIdentityError" or name == "HostnameMismatch":
        return REASON_WRONG_NAME
    if "peer did not return a certificate" in text or "certificate required" in text \
            or "no certificate" in text:
        return REASON_MISSING_CERT
    if name == "CertificateVerifyFailed" or "certificate verify failed" in text:
        return REASON_BAD_CERT
    return REASON_TLS_FAILED
