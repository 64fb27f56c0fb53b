# -*- test-case-name: tests.unit.testing,tests.unit.tls.test_tls_configurator -*-
"""The one test PKI: a throw-away agent CA, its certificates, and a protocol that records TLS.

Every test that needs certificates uses :class:`PKI` (it is also re-exported as
``wanfedtx.tls.testing.PKI`` for older imports), e.g.::

    pki = PKI()
    settings = pki.settings("primary", "pri", tmp_path)   # files + verify_* like case-wanfed-gw
    configurator = TLSConfigurator(settings)

    pair = pki.server("dc1", "s1")                         # <node>.server.<dc>.<domain>
    cert_file, key_file = pki.write(pair, tmp_path, "server")

Certificates are made by ``wanfedtx.tls.certs`` exactly as ``wanfed tls ca/cert create`` makes
them. Nothing here is used at runtime.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from zope.interface import implementer

from wanfedtx.tls import certs
from wanfedtx.tls.configurator import TLSSettings, check_negotiated_alpn
from wanfedtx.tls.errors import ALPNMismatch


class PKI:
    """One agent CA (made once per instance) and helpers to issue certs and settings from it."""

    def __init__(self, domain: str = "consul", *, now: datetime.datetime | None = None) -> None:
        self.domain = domain
        self.now = now
        self.ca = certs.create_ca(domain, now=now)

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (PEM)."""
        return self.ca.cert_pem

    def server(self, dc: str, node: str | None = "", **kwargs: Any) -> certs.CertAndKey:
        """A server cert as ``tls cert create -server -dc dc [-node node]`` makes it."""
        kwargs.setdefault("now", self.now)
        return certs.create_cert(
            self.ca, "server", dc=dc, node=node or "", domain=self.domain, **kwargs)

    def client(self, dc: str, **kwargs: Any) -> certs.CertAndKey:
        kwargs.setdefault("now", self.now)
        return certs.create_cert(self.ca, "client", dc=dc, domain=self.domain, **kwargs)

    def cli(self, dc: str, **kwargs: Any) -> certs.CertAndKey:
        kwargs.setdefault("now", self.now)
        return certs.create_cert(self.ca, "cli", dc=dc, domain=self.domain, **kwargs)

    def write_ca(self, directory: Path | str, name: str = "ca.pem") -> Path:
        """Write the CA certificate to ``directory/name`` and return its path."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        path = d / name
        path.write_bytes(self.ca.cert_pem)
        return path

    @staticmethod
    def write(pair: certs.CertAndKey, directory: Path | str, name: str) -> tuple[Path, Path]:
        """Write ``pair`` as ``directory/<name>.pem`` and ``<name>-key.pem``; return both paths."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cert, key = d / f"{name}.pem", d / f"{name}-key.pem"
        cert.write_bytes(pair.cert_pem)
        key.write_bytes(pair.key_pem)
        return cert, key

    def settings(
        self,
        dc: str,
        node: str,
        directory: Path | str | None = None,
        *,
        pair: certs.CertAndKey | None = None,
        **overrides: Any,
    ) -> TLSSettings:
        """Settings of a server ``node`` in ``dc`` with verify_incoming/outgoing/server_hostname.

        With ``directory`` the CA, cert and key are written there as files (Consul's names) and
        the settings point at them; otherwise in-memory PEMs are used.
        """
        pair = pair if pair is not None else self.server(dc, node)
        values: dict[str, Any] = {
            "verify_incoming": True,
            "verify_outgoing": True,
            "verify_server_hostname": True,
            "domain": self.domain,
            "node_name": node,
            "datacenter": dc,
        }
        if directory is None:
            values.update(ca_pem=self.ca.cert_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem)
        else:
            d = Path(directory)
            d.mkdir(parents=True, exist_ok=True)
            ca_path = d / certs.ca_file_names(self.domain)[0]
            if not ca_path.exists():
                ca_path.write_bytes(self.ca.cert_pem)
            cert_path, key_path = certs.write_cert(pair, "server", d, dc=dc, domain=self.domain)
            values.update(ca_file=str(ca_path), cert_file=str(cert_path), key_file=str(key_path))
        values.update(overrides)
        return TLSSettings(**values)


@attrs.define
class Record:
    """What happened to one :class:`RecordingProtocol`."""

    handshake_done: bool = False
    negotiated: bytes | None = None
    data: bytes = b""
    lost: Failure | None = None
    alpn_error: ALPNMismatch | None = None


@implementer(IHandshakeListener)
class RecordingProtocol(Protocol):
    """Records handshake, data and loss; optionally sends ``greeting`` after the handshake.

    With ``echo`` it writes back every byte it receives. With ``require_alpn`` it behaves like
    the reference's ALPN dialer: after the handshake it checks the negotiated protocol and aborts
    the connection when it differs (the error lands in ``record.alpn_error``).
    """

    def __init__(
        self, greeting: bytes = b"", echo: bool = False, require_alpn: str | None = None
    ) -> None:
        self.record = Record()
        self.greeting = greeting
        self.echo = echo
        self.require_alpn = require_alpn
        self._lost_waiters: list[Deferred[Record]] = []

    def when_lost(self) -> Deferred[Record]:
        """A Deferred that fires with the record once the connection is lost."""
        d: Deferred[Record] = Deferred()
        if self.record.lost is not None:
            d.callback(self.record)
        else:
            self._lost_waiters.append(d)
        return d

    def handshakeCompleted(self) -> None:
        self.record.handshake_done = True
        transport = self.transport
        if transport is None:  # a handshake completes only on a connected transport
            return
        self.record.negotiated = getattr(transport, "negotiatedProtocol", None)
        if self.require_alpn is not None:
            try:
                check_negotiated_alpn(transport, self.require_alpn)
            except ALPNMismatch as e:
                self.record.alpn_error = e
                abort = getattr(transport, "abortConnection", transport.loseConnection)
                abort()
                return
        if self.greeting:
            transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.record.data += data
        if self.echo and self.transport is not None:
            self.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.record.lost = reason
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(self.record)


class RecordingFactory(ClientFactory):
    """Builds :class:`RecordingProtocol` instances and keeps them in ``protocols``."""

    def __init__(
        self, greeting: bytes = b"", echo: bool = False, require_alpn: str | None = None
    ) -> None:
        self.greeting = greeting
        self.echo = echo
        self.require_alpn = require_alpn
        self.protocols: list[RecordingProtocol] = []

    def buildProtocol(self, addr: Any) -> RecordingProtocol:
        p = RecordingProtocol(self.greeting, self.echo, self.require_alpn)
        p.factory = self
        self.protocols.append(p)
        return p


def handshake_in_memory(
    server_creator: Any, client_creator: Any, require_alpn: str | None = None
) -> tuple[Record, Record]:
    """Run a real OpenSSL handshake between two creators over ``twisted.test.iosim``.

    The client sends ``b"ping"`` after its handshake and the server echoes it. With
    ``require_alpn`` (default: the client creator's ``alpn`` attribute, if any) the client checks
    the negotiated protocol like the RPC dialer does. Returns the (server, client) records.
    """
    if require_alpn is None:
        require_alpn = getattr(client_creator, "alpn", None) or None
    clock = Clock()
    sf = RecordingFactory(echo=True)
    cf = RecordingFactory(greeting=b"ping", require_alpn=require_alpn)
    server_tls = TLSMemoryBIOFactory(server_creator, False, sf, clock=clock)
    client_tls = TLSMemoryBIOFactory(client_creator, True, cf, clock=clock)
    _, _, pump = connectedServerAndClient(
        lambda: server_tls.buildProtocol(None),
        lambda: client_tls.buildProtocol(None),
        greet=False,
        clock=clock,
    )
    # Twisted's TLS layer flushes small writes on the next tick: pump and advance the clock.
    for _ in range(20):
        pump.flush()
        clock.advance(0.01)
    return sf.protocols[0].record, cf.protocols[0].record


def client_creator(
    ca_pem: bytes,
    pair: certs.CertAndKey | None,
    hostname: str,
    alpn: str | None = None,
) -> Any:
    """A plain client-side TLS creator (Twisted's ``optionsForClientTLS``) that trusts
    ``ca_pem``, checks ``hostname`` and presents ``pair`` (no certificate when None): for tests
    that play an arbitrary peer against the RPC port."""
    from twisted.internet import ssl as tssl

    client = None
    if pair is not None:
        client = tssl.PrivateCertificate.loadPEM(
            pair.cert_pem + pair.key_pem)
    return tssl.optionsForClientTLS(
        hostname,
        trustRoot=tssl.Certificate.loadPEM(ca_pem),
        clientCertificate=client,
        acceptableProtocols=[alpn.encode()] if alpn else None,
    )


def peer_matrix(pki: PKI, dc: str = "dc1", node: str = "s2") -> dict[str, certs.CertAndKey | None]:
    """The certificates of the RPC-port security matrix, by name, for a server of ``dc``.

    ``none`` (no certificate), ``other-ca`` (a server cert of ``dc`` from another CA), ``cli``,
    ``client``, ``server-other-dc``, ``server-no-node`` (``server.<dc>.<domain>`` only) and
    ``server`` (the legitimate ``<node>.server.<dc>.<domain>``)."""
    other = PKI(pki.domain, now=pki.now)
    return {
        "none": None,
        "other-ca": other.server(dc, node),
        "cli": pki.cli(dc),
        "client": pki.client(dc),
        "server-other-dc": pki.server("dc2" if dc != "dc2" else "dc3", node),
        "server-no-node": pki.server(dc, ""),
        "server": pki.server(dc, node),
    }
