"""``openssl s_client`` against the RPC port (TLSConfigurator): rpc-single reaches the handler."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from wanfedtx.metrics import Registry
from wanfedtx.rpc.codec import encode_request, encode_response
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.endpoints import default_endpoints
from wanfedtx.rpc.protocol import RPCHandler
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService
from wanfedtx.testing.pki import PKI
from wanfedtx.tls import certs
from wanfedtx.tls.configurator import TLSConfigurator

pytestmark = pytest.mark.integration

OPENSSL = shutil.which("openssl")
if OPENSSL is None and os.environ.get("CI") != "true":
    pytest.skip("openssl CLI not installed (Debian package openssl)", allow_module_level=True)


class Collect(ProcessProtocol):
    def __init__(self, want: bytes) -> None:
        self.want = want
        self.out = b""
        self.err = b""
        self.got: Deferred[bytes] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if self.want in self.out and not self.got.called:
            self.got.callback(self.out)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        if not self.got.called:
            self.got.errback(AssertionError(
                f"s_client ended without the reply; stdout={self.out!r} stderr={self.err!r}"))
        self.ended.callback(None)


async def serve(reactor: Any, pki: PKI, tmp: Path) -> RPCPortService:
    tls = TLSConfigurator(pki.settings("primary", "pri", tmp / "server"))
    reg = HandlerRegistry()
    reg.register(RPCType.CONSUL, RPCHandler(default_endpoints(), multi=False))
    svc = RPCPortService(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
                         RPCPortFactory(reg, reactor, tls, metrics=Registry()))
    svc.startService()
    await svc.when_listening()
    return svc


def s_client(reactor: Any, port: int, tmp: Path, pki: PKI, alpn: str, with_cert: bool,
             want: bytes) -> Collect:
    ca_file = tmp / "ca.pem"
    ca_file.write_bytes(pki.ca.cert_pem)
    args = [OPENSSL or "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-alpn", alpn,
            "-servername", "pri.server.primary.consul", "-CAfile", str(ca_file),
            "-verify_hostname", "pri.server.primary.consul", "-verify_return_error", "-quiet"]
    if with_cert:
        cert, key = certs.write_cert(pki.server("secondary", "sec"), "server", tmp,
                                     dc="secondary")
        args += ["-cert", str(cert), "-key", str(key)]
    proto = Collect(want)
    transport = reactor.spawnProcess(proto, args[0], args, env=dict(os.environ))
    transport.write(encode_request(1, "Status.Ping", None))
    return proto


@pytest_twisted.ensureDeferred
async def test_s_client_rpc_single_status_ping(reactor: Any, tmp_path: Path, logged: Any
                                               ) -> None:
    pki = PKI()
    svc = await serve(reactor, pki, tmp_path)
    assert svc.port is not None
    want = encode_response(1, None, None)
    proto = s_client(reactor, svc.port.getHost().port, tmp_path, pki, "consul/rpc-single",
                     True, want)
    try:
        out = await proto.got.addTimeout(20, reactor)
        assert out.endswith(want)
        accepted = [e for e in logged if e.get("log_format") == "accepted nativeTLS RPC"]
        assert accepted[0]["protocol"] == "consul/rpc-single"
        assert accepted[0]["sni"] == "pri.server.primary.consul"
    finally:
        await svc.stopService()  # closes the connection; s_client exits
        await proto.ended.addTimeout(20, reactor)


@pytest.mark.parametrize(("alpn", "with_cert", "message"), [
    ("consul/rpc-single", False, "TLS handshake failed"),
    ("foo/bar", True, "discarding RPC for unknown negotiated protocol"),
])
@pytest_twisted.ensureDeferred
async def test_s_client_refused(reactor: Any, tmp_path: Path, logged: Any, alpn: str,
                                with_cert: bool, message: str) -> None:
    pki = PKI()
    svc = await serve(reactor, pki, tmp_path)
    assert svc.port is not None
    proto = s_client(reactor, svc.port.getHost().port, tmp_path, pki, alpn, with_cert,
                     encode_response(1, None, None))
    try:
        # the server closes the connection, so s_client ends without a reply
        await proto.ended.addTimeout(20, reactor)
        with pytest.raises(AssertionError, match="without the reply"):
            await proto.got
        assert message in [e.get("log_format", "").split(": from=")[0] for e in logged]
    finally:
        await svc.stopService()
