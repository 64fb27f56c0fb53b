"""A real client agent (``server = false``) beside a real server agent with Connect on 127.0.0.1:
the client's leaf cache answers a repeated request without a new signing (``X-Cache: HIT``), a
blocking leaf query on the client is woken by a root rotation sent through the client (``PUT
/v1/connect/ca/configuration``, forwarded to the server) and brings a leaf of the new root; the
old root stays listed, inactive."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import start_dev_agent
from agent_support import until_value as until
from cryptography import x509
from twisted.internet.defer import Deferred

from wanfedtx.connect import ca

pytestmark = pytest.mark.integration

CID = "3f0c1b8e-6a52-4f4e-9b1d-0c2d7e5a9f10"


make_agent = start_dev_agent


async def get(url: str) -> tuple[int, Any, Any]:
    resp = await treq.get(url)
    raw = await resp.content()
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode()
    return resp.code, body, resp.headers


def aki(cert_pem: str) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    value = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    return ca.hex_string(value.key_identifier or b"")


@pytest_twisted.ensureDeferred
async def test_client_leaf_cache_and_rotation(reactor: Any) -> None:
    s1 = make_agent(reactor, "s1", server=True,
                    connect={"enabled": True, "ca_config": {"cluster_id": CID}})
    c1 = make_agent(reactor, "c1", server=False,
                    retry_join=[f"127.0.0.1:{s1.config.serf_port_lan}"], retry_interval="200ms")
    c = c1.http_urls()[0]
    try:
        async def leaf_ready() -> bool:
            code, _, _ = await get(f"{c}/v1/agent/connect/ca/leaf/web")
            return code == 200

        await until(leaf_ready, "a leaf through the client")
        code, first, headers = await get(f"{c}/v1/agent/connect/ca/leaf/web")
        assert code == 200 and headers.getRawHeaders("X-Cache") == ["HIT"]
        index = int(headers.getRawHeaders("X-Consul-Index")[0])
        code, again, headers = await get(f"{c}/v1/agent/connect/ca/leaf/web")
        assert headers.getRawHeaders("X-Cache") == ["HIT"]
        assert again["CertPEM"] == first["CertPEM"]
        code, roots, _ = await get(f"{c}/v1/connect/ca/roots")
        old_id = roots["ActiveRootID"]
        assert aki(first["CertPEM"]) == roots["Roots"][0]["SigningKeyID"]

        blocked = Deferred.fromCoroutine(
            get(f"{c}/v1/agent/connect/ca/leaf/web?index={index}&wait=30s"))
        key, root = ca.generate_root(CID, 1000, ca.datetime.datetime.now(ca.datetime.UTC))
        body = {"Provider": "consul", "Config": {"PrivateKey": key, "RootCert": root}}
        resp = await treq.put(f"{c}/v1/connect/ca/configuration", data=json.dumps(body).encode())
        assert resp.code == 200, await resp.content()
        code, renewed, headers = await blocked
        assert code == 200 and headers.getRawHeaders("X-Cache") == ["MISS"]
        assert int(headers.getRawHeaders("X-Consul-Index")[0]) > index
        code, roots, _ = await get(f"{c}/v1/connect/ca/roots")
        assert roots["ActiveRootID"] != old_id
        assert {r["ID"]: r["Active"] for r in roots["Roots"]} == {
            old_id: False, roots["ActiveRootID"]: True}
        assert aki(renewed["CertPEM"]) == ca.hex_string(
            ca.key_id(ca.load_key(key).public_key()))
        leaf = x509.load_pem_x509_certificate(renewed["CertPEM"].encode())
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(root.encode()))
    finally:
        await c1.stop()
        await s1.stop()
