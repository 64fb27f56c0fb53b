"""The ``wanfed`` HTTP verbs over HTTPS: ``https://`` addresses (or ``CONSUL_HTTP_SSL=true``),
``-ca-file``, ``-tls-server-name``, client certificates; a certificate that does not verify is
one error line and exit 1."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from wanfedtx.cli.main import main
from wanfedtx.testing.pki import PKI

pytestmark = pytest.mark.integration

SELF = {"Stats": {"consul": {"server": "true"}}}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(SELF).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, PKI]]:
    pki = PKI()
    ca = pki.write_ca(tmp_path)
    cert, key = PKI.write(pki.server("dc1"), tmp_path, "server")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", ca, pki
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_https_with_ca_and_server_name(https_server: tuple[str, Path, PKI],
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    addr, ca, _ = https_server
    for name in ("CONSUL_HTTP_ADDR", "WANFED_HTTP_ADDR", "CONSUL_CACERT", "WANFED_CACERT"):
        monkeypatch.delenv(name, raising=False)
    code = main(["info", f"-http-addr=https://{addr}", f"-ca-file={ca}",
                 "-tls-server-name=server.dc1.consul"])
    assert (code, capsys.readouterr().out) == (0, "consul:\n\tserver = true\n")
    monkeypatch.setenv("CONSUL_HTTP_SSL", "true")
    monkeypatch.setenv("CONSUL_CACERT", str(ca))
    monkeypatch.setenv("WANFED_TLS_SERVER_NAME", "server.dc1.consul")
    assert main(["info", f"-http-addr={addr}"]) == 0
    capsys.readouterr()
    code = main(["info", f"-http-addr={addr}", "-tls-server-name=server.dc2.consul"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.startswith(f'Error querying agent: Get "https://{addr}/v1/agent/self": ')
    assert "certificate" in captured.err and captured.err.count("\n") == 1
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "false")
    assert main(["info", f"-http-addr={addr}", "-tls-server-name=server.dc2.consul"]) == 0
