"""A real client agent (``server = false``) beside real server agents on 127.0.0.1.

The client finds its server through LAN gossip and serves the whole HTTP API by forwarding RPCs
to it: KV (CAS, blocking index), catalog, health, agent services with a TTL check synced into
the catalog by anti-entropy, status, federation-state reads, ``?dc=`` through the server. The
leader registers the client's node with ``serfHealth``; a client without servers answers
``No known Consul servers`` and recovers by itself once it joins one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import start_dev_agent
from agent_support import until_value as until
from twisted.internet import threads
from twisted.internet.defer import Deferred

from wanfedtx.agent.agent import Agent
from wanfedtx.testing.pki import PKI

pytestmark = pytest.mark.integration



make_agent = start_dev_agent


def lan(agent: Agent) -> str:
    return f"127.0.0.1:{agent.config.serf_port_lan}"


def base(agent: Agent) -> str:
    return agent.http_urls()[0]


async def get(url: str) -> tuple[int, Any, Any]:
    """Status, decoded JSON body (or text) and headers."""
    resp = await treq.get(url)
    raw = await resp.content()
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode()
    return resp.code, body, resp.headers


async def put(url: str, data: Any = b"") -> tuple[int, Any]:
    if not isinstance(data, bytes):
        data = json.dumps(data).encode()
    resp = await treq.put(url, data=data)
    raw = await resp.content()
    try:
        return resp.code, json.loads(raw)
    except ValueError:
        return resp.code, raw.decode()


def leader_via(agent: Agent) -> Callable[[], Any]:
    async def probe() -> bool:
        code, body, _ = await get(f"{base(agent)}/v1/status/leader")
        return code == 200 and bool(body)

    return probe


@pytest_twisted.ensureDeferred
async def test_client_forwards_every_endpoint_family(reactor: Any) -> None:
    s1 = make_agent(reactor, "s1", server=True)
    c1 = make_agent(reactor, "c1", server=False, retry_join=[lan(s1)], retry_interval="200ms")
    try:
        await until(leader_via(c1), "the client to reach its server")
        c, s = base(c1), base(s1)
        code, leader, _ = await get(f"{c}/v1/status/leader")
        assert leader == f"127.0.0.1:{s1.config.server_port}"
        code, peers, _ = await get(f"{c}/v1/status/peers")
        assert code == 200 and peers == [leader]
        code, me, _ = await get(f"{c}/v1/agent/self")
        assert me["Config"]["Server"] is False
        assert me["Stats"]["consul"] == {"server": "false", "known_servers": "1",
                                         "acl": "disabled"}

        # KV: put/get, CAS, a blocking read woken by a write on the server, delete with CAS.
        assert await put(f"{c}/v1/kv/app/x", b"one") == (200, True)
        code, entries, headers = await get(f"{c}/v1/kv/app/x")
        assert code == 200 and entries[0]["Key"] == "app/x"
        index = entries[0]["ModifyIndex"]
        assert int(headers.getRawHeaders("X-Consul-Index")[0]) >= index
        assert headers.getRawHeaders("X-Consul-KnownLeader") == ["true"]
        assert await put(f"{c}/v1/kv/app/x?cas=1", b"stale") == (200, False)
        assert await put(f"{c}/v1/kv/app/x?cas={index}", b"two") == (200, True)
        code, raw, _ = await get(f"{c}/v1/kv/app/x?raw")
        assert (code, raw) == (200, "two")
        code, entries, headers = await get(f"{c}/v1/kv/app/x")
        index = int(headers.getRawHeaders("X-Consul-Index")[0])
        blocked = Deferred.fromCoroutine(get(f"{c}/v1/kv/app/x?index={index}&wait=10s"))
        assert await put(f"{s}/v1/kv/app/x", b"three") == (200, True)
        code, entries, headers = await blocked
        assert code == 200 and int(headers.getRawHeaders("X-Consul-Index")[0]) > index
        assert entries[0]["ModifyIndex"] > index
        resp = await treq.delete(f"{c}/v1/kv/app/x?cas={entries[0]['ModifyIndex']}")
        assert resp.code == 200 and json.loads(await resp.content()) is True
        assert (await get(f"{c}/v1/kv/app/x"))[0] == 404
        code, text, _ = await get(f"{c}/v1/kv/app/x?index=nope")
        assert (code, text) == (400, "Invalid index")

        # Catalog and health through the client.
        reg = {"Node": "ext", "Address": "192.0.2.9",
               "Service": {"Service": "db", "ID": "db1", "Port": 5432},
               "Check": {"CheckID": "db-ok", "ServiceID": "db1", "Status": "passing"}}
        assert await put(f"{c}/v1/catalog/register", reg) == (200, True)
        code, services, _ = await get(f"{c}/v1/catalog/services")
        assert "db" in services and "consul" in services
        code, healthy, _ = await get(f"{c}/v1/health/service/db?passing")
        assert [h["Node"]["Node"] for h in healthy] == ["ext"]
        code, dcs, _ = await get(f"{c}/v1/catalog/datacenters")
        assert dcs == ["dc1"]

        # The client's node is in the catalog with serfHealth (the leader reconciles it).
        async def client_node_healthy() -> bool:
            code, checks, _ = await get(f"{s}/v1/health/node/c1")
            return code == 200 and any(
                ch["CheckID"] == "serfHealth" and ch["Status"] == "passing"
                and ch["Output"] == "Agent alive and reachable" for ch in checks)

        await until(client_node_healthy, "c1 in the catalog with serfHealth passing")
        code, nodes, _ = await get(f"{c}/v1/catalog/nodes")
        assert {n["Node"] for n in nodes} == {"c1", "ext", "s1"}

        # Agent service + TTL check on the client, synced into the catalog by anti-entropy.
        svc = {"Name": "web", "ID": "web1", "Port": 8080,
               "Check": {"CheckID": "web-ttl", "TTL": "30s"}}
        code, _ = await put(f"{c}/v1/agent/service/register", svc)
        assert code == 200
        code, mine, _ = await get(f"{c}/v1/agent/services")
        assert list(mine) == ["web1"]
        assert (await put(f"{c}/v1/agent/check/pass/web-ttl"))[0] == 200

        async def web_passing() -> bool:
            code, rows, _ = await get(f"{s}/v1/health/service/web?passing")
            return code == 200 and [r["Node"]["Node"] for r in rows] == ["c1"]

        await until(web_passing, "the client's service passing in the catalog")
        code, checks, _ = await get(f"{c}/v1/agent/checks")
        assert checks["web-ttl"]["Status"] == "passing"

        # Federation-state reads are forwarded too.
        # (the leader's anti-entropy records this datacenter's state, gateways or not, as the
        # reference's on every server; it may not have run yet)
        code, states, _ = await get(f"{c}/v1/internal/federation-states")
        assert code == 200
        assert [(st["Datacenter"], st.get("MeshGateways") or []) for st in states] in (
            [], [(dcs[0], [])])
        code, gws, _ = await get(f"{c}/v1/internal/federation-states/mesh-gateways")
        assert (code, gws) == (200, {})
    finally:
        await c1.stop()
        await s1.stop()


@pytest_twisted.ensureDeferred
async def test_client_without_servers_then_recovers_and_leaves(reactor: Any) -> None:
    c1 = make_agent(reactor, "c1", server=False,
                    services=[{"name": "api", "id": "api1", "port": 9000}])
    s1: Agent | None = None
    try:
        c = base(c1)
        for path in ("/v1/kv/x", "/v1/status/leader", "/v1/catalog/nodes",
                     "/v1/health/service/api"):
            code, text, _ = await get(c + path)
            assert (code, text) == (500, "No known Consul servers"), path
        code, text = await put(f"{c}/v1/kv/x", b"v")
        assert (code, text) == (500, "No known Consul servers")
        code, me, _ = await get(f"{c}/v1/agent/self")
        assert me["Stats"]["consul"]["known_servers"] == "0"
        # local agent endpoints still answer
        code, mine, _ = await get(f"{c}/v1/agent/services")
        assert code == 200 and list(mine) == ["api1"]

        s1 = make_agent(reactor, "s1", server=True)
        assert (await put(f"{c}/v1/agent/join/{lan(s1)}"))[0] == 200
        await until(leader_via(c1), "the client recovering once it joined a server")
        assert await put(f"{c}/v1/kv/x", b"v") == (200, True)
        s = base(s1)

        # The service registered while no server was known reaches the catalog (ServerUp
        # triggers a full anti-entropy sync).
        async def api_in_catalog() -> bool:
            code, rows, _ = await get(f"{s}/v1/catalog/service/api")
            return code == 200 and [r["Node"] for r in rows] == ["c1"]

        await until(api_in_catalog, "the client's config service in the catalog")

        # A graceful leave: the leader deregisters the client's node.
        assert (await put(f"{c}/v1/agent/leave"))[0] == 200

        async def c1_gone() -> bool:
            code, nodes, _ = await get(f"{s}/v1/catalog/nodes")
            return code == 200 and [n["Node"] for n in nodes] == ["s1"]

        await until(c1_gone, "the left client deregistered")
    finally:
        await c1.stop()
        if s1 is not None:
            await s1.stop()


@pytest_twisted.ensureDeferred
async def test_client_dc_query_goes_through_its_server(reactor: Any) -> None:
    s1 = make_agent(reactor, "s1", "dc1", server=True)
    s2 = make_agent(reactor, "s2", "dc2", server=True)
    c1 = make_agent(reactor, "c1", "dc1", server=False, start_join=[lan(s1)])
    try:
        code, _ = await put(f"{base(s2)}/v1/agent/join/127.0.0.1:{s1.config.serf_port_wan}?wan=1")
        assert code == 200
        assert await put(f"{base(s2)}/v1/kv/where", b"dc2-value") == (200, True)
        await until(leader_via(c1), "the client to reach its server")
        c = base(c1)

        async def dc2_readable() -> bool:
            code, entries, _ = await get(f"{c}/v1/kv/where?dc=dc2")
            return code == 200 and entries[0]["Key"] == "where"

        await until(dc2_readable, "dc2's KV read through the dc1 client")
        assert await put(f"{c}/v1/kv/from-client?dc=dc2", b"hi") == (200, True)
        code, raw, _ = await get(f"{base(s2)}/v1/kv/from-client?raw")
        assert code == 200 and str(raw) == "hi"
        code, dcs, _ = await get(f"{c}/v1/catalog/datacenters")
        assert dcs == ["dc1", "dc2"]
        code, text, _ = await get(f"{c}/v1/kv/where?dc=dc9")
        assert (code, text) == (500, "rpc error making call: No path to datacenter")
    finally:
        await c1.stop()
        await s2.stop()
        await s1.stop()


@pytest_twisted.ensureDeferred
async def test_client_rpc_over_tls_and_py_consul(reactor: Any, tmp_path: Path) -> None:
    consul = pytest.importorskip("consul")
    ca = PKI()
    ca_file = ca.write_ca(tmp_path)
    scert, skey = PKI.write(ca.server("dc1", "s1"), tmp_path, "server")
    ccert, ckey = PKI.write(ca.client("dc1"), tmp_path, "client")
    tls = {"ca_file": str(ca_file), "verify_incoming": True, "verify_outgoing": True}
    s1 = make_agent(reactor, "s1", server=True, cert_file=str(scert), key_file=str(skey),
                    verify_server_hostname=True, **tls)
    c1 = make_agent(reactor, "c1", server=False, cert_file=str(ccert), key_file=str(ckey),
                    start_join=[lan(s1)], **tls)
    try:
        await until(leader_via(c1), "the client to reach its server over TLS")
        port = c1.http_urls()[0].rsplit(":", 1)[1]
        api = consul.Consul(host="127.0.0.1", port=int(port))

        def calls() -> dict[str, Any]:
            api.kv.put("py/k", "v1")
            index, entry = api.kv.get("py/k")
            cas_miss = api.kv.put("py/k", "v2", cas=1)
            cas_hit = api.kv.put("py/k", "v2", cas=entry["ModifyIndex"])
            # a blocking read that returns at once: the index is already past
            _, again = api.kv.get("py/k", index=1, wait="1s")
            deleted = api.kv.delete("py/k", cas=again["ModifyIndex"])
            api.agent.service.register("pysvc", service_id="pysvc1", port=7000,
                                       check=consul.Check.ttl("30s"))
            api.agent.check.ttl_pass("service:pysvc1")
            api.catalog.register("ext", "192.0.2.3", service={"Service": "ext"})
            return {"leader": api.status.leader(), "peers": api.status.peers(),
                    "value": entry["Value"], "cas": (cas_miss, cas_hit, deleted),
                    "again": again["Value"], "gone": api.kv.get("py/k")[1],
                    "services": api.agent.services(), "index": index,
                    "nodes": api.catalog.nodes()[1], "dcs": api.catalog.datacenters()}

        out = await threads.deferToThread(calls)
        assert out["value"] == b"v1" and out["again"] == b"v2" and out["gone"] is None
        assert out["cas"] == (False, True, True)
        assert out["leader"] == f"127.0.0.1:{s1.config.server_port}"
        assert out["peers"] == [out["leader"]] and out["dcs"] == ["dc1"]
        assert "pysvc1" in out["services"]
        assert {"s1", "ext"} <= {n["Node"] for n in out["nodes"]}

        def passing() -> list[str]:
            return [e["Node"]["Node"] for e in api.health.service("pysvc", passing=True)[1]]

        async def pysvc_passing() -> bool:
            return await threads.deferToThread(passing) == ["c1"]

        await until(pysvc_passing, "the py-consul service passing in the catalog")
        api.http.session.close()
    finally:
        await c1.stop()
        await s1.stop()


@pytest_twisted.ensureDeferred
async def test_client_that_loses_its_server_recovers_by_itself(reactor: Any) -> None:
    s1 = make_agent(reactor, "s1", server=True)
    c1 = make_agent(reactor, "c1", server=False, start_join=[lan(s1)])
    s2: Agent | None = None
    try:
        await until(leader_via(c1), "the client to reach its server")
        c = base(c1)
        await s1.stop()

        async def no_servers() -> bool:
            code, text, _ = await get(f"{c}/v1/kv/x")
            return (code, text) == (500, "No known Consul servers")

        await until(no_servers, "the client without servers")
        # A new server joins the LAN pool through the client; nothing is done on the client.
        s2 = make_agent(reactor, "s2", server=True, start_join=[lan(c1)])
        await until(leader_via(c1), "the client using the new server")
        assert await put(f"{c}/v1/kv/x", b"back") == (200, True)
        code, me, _ = await get(f"{c}/v1/agent/self")
        assert code == 200 and me["Stats"]["consul"]["known_servers"] == "1"
    finally:
        await c1.stop()
        if s2 is not None:
            await s2.stop()
