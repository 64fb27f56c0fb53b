"""Loopback TLS backends and clients for the gateway tests (real OpenSSL on both ends).

Backends are Twisted TLS servers whose certificate CN names them, so a client proves which backend
it reached by reading the peer certificate. Clients are blocking stdlib ``ssl`` sockets run in a
thread, because they must set SNI freely and read the peer CN.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import protocol
from twisted.internet import ssl as tssl

from wanfedtx.testing.pki import PKI


class CA:
    """The shared test PKI (``wanfedtx.testing.pki``) with its CA written to a file and server
    certs issued by name."""

    def __init__(self) -> None:
        self.pki = PKI()
        self.ca = self.pki.ca
        self.dir = Path(tempfile.mkdtemp(prefix="wanfed-gw-ca-"))
        self.ca_file = self.pki.write_ca(self.dir)

    def issue(self, name: str) -> tuple[bytes, bytes]:
        """A server cert for ``<node>.server.<dc>.consul`` (CN ``server.<dc>.consul``)."""
        node, _, rest = name.partition(".server.")
        dc = rest.removesuffix(".consul")
        ck = self.pki.server(dc, node)
        return ck.cert_pem, ck.key_pem


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
            return cn, recv_upto(s, len(payload))


def peer_cn(s: ssl.SSLSocket) -> str:
    """The backend's identity: its node SAN, after checking the CN names the same DC."""
    return _identity(s.getpeercert())


def _identity(cert: Any) -> str:
    assert cert is not None
    cn = next(str(v) for rdn in cert["subject"] for k, v in rdn if k == "commonName")
    node_san = next(v for k, v in cert["subjectAltName"] if k == "DNS")
    assert node_san.endswith("." + cn), (cn, node_san)
    return str(node_san)


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
        return _identity(obj.getpeercert())


def closed_without_reply(gw: tuple[str, int], data: bytes, timeout: float = 10.0) -> bool:
    """Send bytes; True if the gateway closes the connection without sending anything."""
    with socket.create_connection(gw, timeout=timeout) as s:
        s.sendall(data)
        try:
            return s.recv(1024) == b""
        except ConnectionResetError:
            return True


def recv_upto(s: socket.socket, n: int) -> bytes:
    """What ``s`` sends until at least ``n`` bytes have come or it closes (fewer then)."""
    got = b""
    while len(got) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got
