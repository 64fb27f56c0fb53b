"""A real server agent with ``connect.enabled``: the primary's leader bootstraps the built-in CA
through raft; ``/v1/connect/ca/roots`` has Consul's shape; a leaf from
``/v1/agent/connect/ca/leaf/<service>`` verifies against the root and names its SPIFFE ID; the
trust domain and the root survive a restart (they are in raft)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest_twisted
from agent_support import http_get, http_on_port_zero, until
from cryptography import x509
from netutil import free_port

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load
from wanfedtx.connect import ca

HEX_ID = re.compile(r"^([0-9a-f]{2}:){19}[0-9a-f]{2}$")
HEX_KEY = re.compile(r"^([0-9a-f]{2}:){31}[0-9a-f]{2}$")


def _config(tmp: Path, extra: list[str]) -> Any:
    hcl = tmp / "s1.hcl"
    lines = [
        'datacenter = "dc1"',
        'node_name = "s1"',
        "server = true",
        "bootstrap = true",
        'bind_addr = "127.0.0.1"',
        'client_addr = "127.0.0.1"',
        f'data_dir = "{tmp / "data"}"',
        f"ports {{ server = {free_port()} dns = -1 serf_lan = {free_port()} "
        f"serf_wan = {free_port()} }}",
        *extra,
    ]
    hcl.write_text("\n".join(lines) + "\n")
    return http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime)


async def _roots(reactor: Any, base: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def bootstrapped() -> bool:
        code, body = await http_get(base + "/v1/connect/ca/roots")
        if code != 200:
            return False
        found.update(json.loads(body))
        return bool(found.get("Roots"))

    await until(reactor, "CA roots", bootstrapped)
    return found


@pytest_twisted.ensureDeferred
async def test_roots_leaf_and_restart(reactor: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path, ['connect { enabled = true ca_config { leaf_cert_ttl = "24h" } }'])
    agent = Agent(cfg, reactor)
    agent.startService()
    (base,) = agent.http_urls()
    try:
        roots = await _roots(reactor, base)
        assert list(roots) == ["ActiveRootID", "TrustDomain", "Roots"]
        cluster_id = roots["TrustDomain"].removesuffix(".consul")
        uuid.UUID(cluster_id)
        (root,) = roots["Roots"]
        assert list(root) == [
            "ID", "Name", "SerialNumber", "SigningKeyID", "ExternalTrustDomain", "NotBefore",
            "NotAfter", "RootCert", "IntermediateCerts", "Active", "PrivateKeyType",
            "PrivateKeyBits", "CreateIndex", "ModifyIndex",
        ]
        assert root["ID"] == roots["ActiveRootID"] and HEX_ID.match(root["ID"])
        assert HEX_KEY.match(root["SigningKeyID"])
        assert root["Name"] == "Consul CA Root Cert" and root["Active"] is True
        assert root["ExternalTrustDomain"] == cluster_id
        assert root["IntermediateCerts"] is None
        assert (root["PrivateKeyType"], root["PrivateKeyBits"]) == ("ec", 256)
        assert "PRIVATE KEY" not in json.dumps(roots)
        root_cert = x509.load_pem_x509_certificate(root["RootCert"].encode())
        assert ca.fingerprint(root_cert) == root["ID"]

        code, body = await http_get(base + "/v1/agent/connect/ca/roots")
        assert code == 200 and json.loads(body)["ActiveRootID"] == root["ID"]

        code, body = await http_get(base + "/v1/connect/ca/configuration")
        assert code == 200
        conf = json.loads(body)
        assert conf["Provider"] == "consul"
        assert conf["Config"]["LeafCertTTL"] == "24h"
        assert "ClusterID" not in conf

        code, body = await http_get(base + "/v1/agent/connect/ca/leaf/web")
        assert code == 200, body
        leaf = json.loads(body)
        uri = f"spiffe://{roots['TrustDomain']}/ns/default/dc/dc1/svc/web"
        assert leaf["ServiceURI"] == uri and leaf["Service"] == "web"
        cert = x509.load_pem_x509_certificate(leaf["CertPEM"].encode())
        cert.verify_directly_issued_by(root_cert)  # raises if the root did not sign it
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime.total_seconds() == 24 * 3600
        assert "EC PRIVATE KEY" in leaf["PrivateKeyPEM"]

        code, body = await http_get(base + "/v1/agent/connect/ca/leaf/bad%20name")
        assert code == 400 and b"Invalid service" in body
    finally:
        await agent.stop()

    again = Agent(cfg, reactor)
    again.startService()
    (base,) = again.http_urls()
    try:
        after = await _roots(reactor, base)
        assert after["TrustDomain"] == roots["TrustDomain"]
        assert after["ActiveRootID"] == roots["ActiveRootID"]
        code, body = await http_get(base + "/v1/agent/connect/ca/leaf/api")
        assert code == 200, body
        cert = x509.load_pem_x509_certificate(json.loads(body)["CertPEM"].encode())
        cert.verify_directly_issued_by(root_cert)
    finally:
        await again.stop()


@pytest_twisted.ensureDeferred
async def test_connect_disabled_answers_clearly(reactor: Any, tmp_path: Path) -> None:
    agent = Agent(_config(tmp_path, []), reactor)
    agent.startService()
    (base,) = agent.http_urls()
    try:
        async def leader() -> bool:
            code, body = await http_get(base + "/v1/status/leader")
            return code == 200 and body not in (b'""', b"")

        await until(reactor, "a leader", leader)
        code, body = await http_get(base + "/v1/connect/ca/roots")
        assert code == 500
        assert body == b"Connect must be enabled in order to use this endpoint"
    finally:
        await agent.stop()
