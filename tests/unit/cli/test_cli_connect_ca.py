"""``wanfed connect ca get-config|set-config`` and ``PUT /v1/connect/ca/configuration`` against
an in-process primary server (real FSM, local consensus, ``task.Clock``) behind the real
Connect CA routes, served through StubTreq (no sockets); the leaf endpoint's cache headers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cli_support import serve
from twisted.internet import task

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.cli import httpapi
from wanfedtx.cli.main import main
from wanfedtx.connect import ca
from wanfedtx.connect.server import ConnectCAServer
from wanfedtx.http.app import API
from wanfedtx.http.common import APIContext
from wanfedtx.http.connect_ca import ConnectCARoutes

CID = "11111111-2222-3333-4444-555555555555"


class Primary:
    def __init__(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.cat = CatalogAgent(node_name="s1", datacenter="dc1", advertise_addr="127.0.0.1",
                                server_port=8300, reactor=self.clock, rng=random.Random(3))
        ConnectCAServer(self.cat, "dc1", {"ClusterID": CID}, self.clock).setServiceParent(
            self.cat)
        self.cat.startService()
        self.api = API([ConnectCARoutes(APIContext("dc1", self.cat.rpc), clock=self.clock)])

    def transport(self, req: httpapi.Request, stream: bool) -> httpapi.Response:
        return serve(self.api.resource(), req, stream)

    def request(self, method: str, path: str, body: bytes | None = None) -> httpapi.Response:
        req = httpapi.Request(method, "http://127.0.0.1:8500" + path, body, {}, 5.0, None, "")
        return self.transport(req, False)


@pytest.fixture
def primary(monkeypatch: pytest.MonkeyPatch) -> Primary:
    for name in ("HTTP_ADDR", "HTTP_TOKEN", "HTTP_TOKEN_FILE", "HTTP_SSL"):
        monkeypatch.delenv(f"CONSUL_{name}", raising=False)
        monkeypatch.delenv(f"WANFED_{name}", raising=False)
    p = Primary()
    monkeypatch.setattr(httpapi, "TRANSPORT", [p.transport])
    return p


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_get_and_set_config_rotate_the_root(
    primary: Primary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "connect", "ca", "get-config")
    assert (code, err) == (0, "")
    config = json.loads(out)
    assert config["Provider"] == "consul" and config["Config"]["LeafCertTTL"] == "72h"
    before = json.loads(primary.request("GET", "/v1/connect/ca/roots").body)
    key, root = ca.generate_root(CID, 50, ca.datetime.datetime.now(ca.datetime.UTC))
    f = tmp_path / "ca.json"
    f.write_text(json.dumps({"Provider": "consul",
                             "Config": {"PrivateKey": key, "RootCert": root}}))
    assert run(capsys, "connect", "ca", "set-config", "-config-file", str(f)) == (
        0, "Configuration updated!\n", "")
    after = json.loads(primary.request("GET", "/v1/connect/ca/roots").body)
    assert after["ActiveRootID"] != before["ActiveRootID"]
    assert [r["Active"] for r in after["Roots"]] == [False, True]
    assert after["TrustDomain"] == before["TrustDomain"]


def test_set_config_errors(
    primary: Primary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "connect", "ca", "set-config") == (1, "", "-config-file is required\n")
    code, _, err = run(capsys, "connect", "ca", "set-config", "-config-file", "/nonexistent")
    assert code == 1 and err.startswith("Error reading config file: ")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    code, _, err = run(capsys, "connect", "ca", "set-config", "-config-file", str(bad))
    assert code == 1 and err.startswith("Error parsing config file: ")
    ttl = tmp_path / "ttl.json"
    ttl.write_text(json.dumps({"Provider": "consul", "Config": {"LeafCertTTL": "10m"}}))
    assert run(capsys, "connect", "ca", "set-config", "-config-file", str(ttl)) == (
        1, "", "Error setting CA configuration: Unexpected response code: 400 "
        "(leaf cert TTL must be greater or equal than 1h0m0s)\n")
    assert run(capsys, "connect", "ca") == (
        1, "", "Usage: wanfed connect ca <get-config|set-config> [options]\n")


def test_http_put_configuration(primary: Primary) -> None:
    resp = primary.request("PUT", "/v1/connect/ca/configuration",
                           json.dumps({"Provider": "consul",
                                       "Config": {"LeafCertTTL": "24h"}}).encode())
    assert (resp.status, resp.body) == (200, b"")
    got = json.loads(primary.request("GET", "/v1/connect/ca/configuration").body)
    assert got["Config"]["LeafCertTTL"] == "24h"
    for body, status, text in [
        (b"{", 400, b"Request decode failed"),
        (b"[]", 400, b"the body must be a JSON object"),
        (json.dumps({"Provider": "consul", "State": {"a": "b"}}).encode(), 400,
         b"Provider State is read-only"),
        (json.dumps({"Provider": "vault"}).encode(), 400, b"not supported by wanfedtx"),
    ]:
        resp = primary.request("PUT", "/v1/connect/ca/configuration", body)
        assert resp.status == status and text in resp.body, resp.body


def test_leaf_endpoint_hits_its_cache(primary: Primary) -> None:
    first = primary.request("GET", "/v1/agent/connect/ca/leaf/web")
    assert first.status == 200 and first.headers["x-cache"] == "MISS"
    primary.clock.advance(7)
    second = primary.request("GET", "/v1/agent/connect/ca/leaf/web")
    assert second.headers["x-cache"] == "HIT" and second.headers["age"] == "7"
    assert json.loads(second.body)["CertPEM"] == json.loads(first.body)["CertPEM"]
    assert second.headers["x-consul-index"] == str(json.loads(first.body)["ModifyIndex"])
    bad = primary.request("GET", "/v1/agent/connect/ca/leaf/we%20b")
    assert bad.status == 400 and bad.body.startswith(b"Invalid service")
    bad = primary.request("GET", "/v1/agent/connect/ca/leaf/web?index=x")
    assert bad.status == 400


