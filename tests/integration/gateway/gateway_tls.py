"""Loopback TLS backends and clients for the gateway tests (real OpenSSL on both ends).

Backends are Twisted TLS servers whose certificate CN names them, so a client proves which backend
it reached by reading the peer certificate. Clients are blocking stdlib ``ssl`` sockets run in a
thread, because they must set SNI freely and read the peer CN.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import protocol
from twisted.internet import ssl as tssl


class CA:
    """A throw-away CA that issues server certs with a chosen CN."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.dir = Path(tempfile.mkdtemp(prefix="wanfed-gw-ca-"))
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        pem_cert = cert.public_bytes(serialization.Encoding.PEM)
        pem_key = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem_cert, pem_key


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


class TLSBackend:
    """A TLS echo server on 127.0.0.1 with a certificate whose CN is ``cn``."""

    def __init__(self, reactor: Any, ca: CA, cn: str) -> None:
        pem_cert, pem_key = ca.issue(cn)
        cert = tssl.PrivateCertificate.loadPEM(pem_key + pem_cert)
        # offer ALPN: a Twisted server without it answers an ALPN hello with an internal error
        opts = tssl.CertificateOptions(
            privateKey=cert.privateKey.original,
            certificate=cert.original,
            acceptableProtocols=[b"consul/rpc-multi", b"http/1.1"],
        )
        f = protocol.Factory.forProtocol(Echo)
        self.port = reactor.listenSSL(0, f, opts, interface="127.0.0.1")
        self.cn = cn
        self.address = ("127.0.0.1", self.port.getHost().port)

    def stop(self) -> Any:
        return self.port.stopListening()


def client_context(ca: CA, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(str(ca.ca_file))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_roundtrip(
    gw: tuple[str, int],
    sni: str,
    ctx: ssl.SSLContext,
    payload: bytes = b"ping",
    timeout: float = 10.0,
) -> tuple[str, bytes]:
    """Connect through the gateway with SNI, return (peer CN, echoed payload)."""
    with socket.create_connection(gw, timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            cn = peer_cn(s)
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            return cn, got


def peer_cn(s: ssl.SSLSocket) -> str:
    cert = s.getpeercert()
    assert cert is not None
    for rdn in cert["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return str(v)
    raise AssertionError("peer certificate has no CN")


def slow_hello_roundtrip(gw: tuple[str, int], sni: str, ctx: ssl.SSLContext) -> str:
    """Send the ClientHello one byte per TCP segment, then finish the handshake; return CN."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    with socket.create_connection(gw, timeout=10) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        for b in hello:
            raw.sendall(bytes([b]))
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = out.read()
                if pending:
                    raw.sendall(pending)
                data = raw.recv(65536)
                if not data:
                    raise ConnectionError("gateway closed during the handshake") from None
                inc.write(data)
        pending = out.read()
        if pending:
            raw.sendall(pending)
        cert = obj.getpeercert()
        assert cert is not None
        return next(str(v) for rdn in cert["subject"] for k, v in rdn if k == "commonName")


def closed_without_reply(gw: tuple[str, int], data: bytes, timeout: float = 10.0) -> bool:
    """Send bytes; True if the gateway closes the connection without sending anything."""
    with socket.create_connection(gw, timeout=timeout) as s:
        s.sendall(data)
        try:
            return s.recv(1024) == b""
        except ConnectionResetError:
            return True
