"""py-consul (from PyPI, unmodified) against the state-backed HTTP API on 127.0.0.1.

py-consul is synchronous (requests), so each call runs in a thread while the reactor serves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import consul
import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

pytestmark = pytest.mark.integration


def client(api: Any, **kw: Any) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=api.port, **kw)


async def call(fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
    return await deferToThread(fn, *a, **kw)


@pytest_twisted.ensureDeferred
async def test_catalog_register_deregister_and_health_passing(state_api: Any) -> None:
    c = client(state_api)
    try:
        ok = await call(
            c.catalog.register,
            "node1",
            "127.0.0.2",
            service={"Service": "web", "ID": "web1", "Port": 8080, "Tags": ["v1"]},
            check={"CheckID": "web-ok", "Name": "web ok", "ServiceID": "web1", "Status": "passing"},
        )
        assert ok is True
        await call(
            c.catalog.register,
            "node2",
            "127.0.0.3",
            service={"Service": "web", "ID": "web2", "Port": 8081},
            check={"CheckID": "web-bad", "ServiceID": "web2", "Status": "critical"},
        )
        _, nodes = await call(c.catalog.nodes)
        assert [n["Node"] for n in nodes] == ["node1", "node2", "server-dc1"]
        _, services = await call(c.catalog.services)
        assert services["web"] == ["v1"]
        _, instances = await call(c.catalog.service, "web")
        assert [(i["Node"], i["ServicePort"]) for i in instances] == [
            ("node1", 8080),
            ("node2", 8081),
        ]
        _, tagged = await call(c.catalog.service, "web", tag="v1")
        assert [i["ServiceID"] for i in tagged] == ["web1"]
        _, node = await call(c.catalog.node, "node1")
        assert node["Node"]["Address"] == "127.0.0.2" and list(node["Services"]) == ["web1"]
        _, healthy = await call(c.health.service, "web", passing=True)
        assert [h["Service"]["ID"] for h in healthy] == ["web1"]
        _, everything = await call(c.health.service, "web")
        assert len(everything) == 2
        _, critical = await call(c.health.state, "critical")
        assert [ch["CheckID"] for ch in critical] == ["web-bad"]
        _, node_checks = await call(c.health.node, "node1")
        assert [ch["CheckID"] for ch in node_checks] == ["web-ok"]
        _, svc_checks = await call(c.health.checks, "web")
        assert {ch["CheckID"] for ch in svc_checks} == {"web-ok", "web-bad"}

        assert await call(c.catalog.deregister, "node2", service_id="web2") is True
        _, instances = await call(c.catalog.service, "web")
        assert [i["ServiceID"] for i in instances] == ["web1"]
        await call(c.catalog.deregister, "node1")
        _, nodes = await call(c.catalog.nodes)
        assert [n["Node"] for n in nodes] == ["node2", "server-dc1"]
        _, missing = await call(c.catalog.node, "node1")
        assert missing is None
    finally:
        c.http.session.close()


@pytest_twisted.ensureDeferred
async def test_kv_put_get_delete_cas_recurse(state_api: Any) -> None:
    c = client(state_api)
    try:
        assert await call(c.kv.put, "app/config", "hello", flags=42) is True
        index, entry = await call(c.kv.get, "app/config")
        assert entry["Value"] == b"hello" and entry["Flags"] == 42
        assert int(index) == entry["ModifyIndex"]
        modify = entry["ModifyIndex"]
        assert await call(c.kv.put, "app/config", "nope", cas=modify - 1) is False
        assert await call(c.kv.put, "app/config", "v2", cas=modify) is True
        assert await call(c.kv.put, "app/config", "x", cas=0) is False  # create-only
        assert await call(c.kv.put, "app/new", "x", cas=0) is True
        await call(c.kv.put, "app/sub/deep", b"\x00\xffbin")
        _, entries = await call(c.kv.get, "app/", recurse=True)
        assert [e["Key"] for e in entries] == ["app/config", "app/new", "app/sub/deep"]
        assert entries[2]["Value"] == b"\x00\xffbin"
        _, keys = await call(c.kv.get, "app/", keys=True, separator="/")
        assert keys == ["app/config", "app/new", "app/sub/"]
        _, entry = await call(c.kv.get, "app/config")
        assert entry["Value"] == b"v2" and entry["CreateIndex"] < entry["ModifyIndex"]
        assert await call(c.kv.delete, "app/new", cas=1) is False
        _, entry = await call(c.kv.get, "app/new")
        assert await call(c.kv.delete, "app/new", cas=entry["ModifyIndex"]) is True
        assert await call(c.kv.delete, "app/config") is True
        _, gone = await call(c.kv.get, "app/config")
        assert gone is None
        assert await call(c.kv.delete, "app/", recurse=True) is True
        _, entries = await call(c.kv.get, "app/", recurse=True)
        assert entries is None
    finally:
        c.http.session.close()


@pytest_twisted.ensureDeferred
async def test_blocking_query_unblocked_by_write(state_api: Any, reactor: Any) -> None:
    c = client(state_api)
    writer = client(state_api)
    try:
        await call(c.kv.put, "watched", "1")
        index, _ = await call(c.kv.get, "watched")
        pending = deferToThread(c.kv.get, "watched", index=index, wait="30s")
        done: list[Any] = []
        pending.addBoth(lambda r: done.append(r) or r)
        # Wait until the blocking request is parked on the key (a write to any key before that
        # would legitimately answer it: the returned index is the KV table's).
        from twisted.internet.task import deferLater

        watches = state_api.server.fsm.state.tables["kvs"]._key_watch
        for _ in range(500):
            if len(watches):
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert len(watches) == 1
        # A write to another key does not wake it.
        await call(writer.kv.put, "other", "x")
        for _ in range(20):
            await deferLater(reactor, 0.01, lambda: None)
        assert done == []
        await call(writer.kv.put, "watched", "2")
        new_index, entry = await pending
        assert int(new_index) > int(index)
        assert entry["Value"] == b"2"
    finally:
        c.http.session.close()
        writer.http.session.close()


@pytest_twisted.ensureDeferred
async def test_dc_forwarding_and_unknown_dc(state_api: Any) -> None:
    c = client(state_api)
    try:
        assert await call(c.kv.put, "foo", "bar", dc="dc2") is True
        _, local = await call(c.kv.get, "foo")
        assert local is None
        _, remote = await call(c.kv.get, "foo", dc="dc2")
        assert remote["Value"] == b"bar"
        assert await call(c.catalog.datacenters) == ["dc1", "dc2"]
        with pytest.raises(consul.ConsulException, match="No path to datacenter"):
            await call(c.kv.get, "foo", dc="nowhere")
        with pytest.raises(consul.ConsulException, match="No path to datacenter"):
            await call(c.kv.put, "foo", "bar", dc="nowhere")
        with pytest.raises(consul.ConsulException, match="No path to datacenter"):
            await call(c.catalog.nodes, dc="nowhere")
    finally:
        c.http.session.close()


@pytest_twisted.ensureDeferred
async def test_status_leader_and_peers(state_api: Any) -> None:
    c = client(state_api)
    try:
        assert await call(c.status.leader) == "127.0.0.1:8300"
        assert await call(c.status.peers) == ["127.0.0.1:8300"]
    finally:
        c.http.session.close()


async def eventually(check: Callable[[], Any], reactor: Any, timeout: float = 10.0) -> Any:
    """Poll ``check`` (run in a thread) until it returns a truthy value or the deadline passes."""
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + timeout
    while True:
        result = await call(check)
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await deferLater(reactor, 0.05, lambda: None)


@pytest_twisted.ensureDeferred
async def test_server_registers_consul_service_with_serf_health(state_api: Any) -> None:
    c = client(state_api)
    try:
        _, instances = await call(c.catalog.service, "consul")
        assert [(i["Node"], i["ServicePort"], i["Address"]) for i in instances] == [
            ("server-dc1", 8300, "127.0.0.1")
        ]
        _, healthy = await call(c.health.service, "consul", passing=True)
        [entry] = healthy
        assert [(ch["CheckID"], ch["Name"], ch["Output"]) for ch in entry["Checks"]] == [
            ("serfHealth", "Serf Health Status", "Agent alive and reachable")
        ]
    finally:
        c.http.session.close()


@pytest_twisted.ensureDeferred
async def test_config_mesh_gateway_reaches_catalog(state_api: Any, reactor: Any) -> None:
    c = client(state_api)
    try:

        def gateway() -> Any:
            return c.catalog.service("mesh-gateway")[1]

        [gw] = await eventually(gateway, reactor)
        assert (gw["ServiceKind"], gw["ServicePort"]) == ("mesh-gateway", 4431)
        assert gw["ServiceMeta"] == {"consul-wan-federation": "1"}
        services = await call(c.agent.services)
        assert services["mesh-gateway"]["Kind"] == "mesh-gateway"
    finally:
        c.http.session.close()


@pytest_twisted.ensureDeferred
async def test_agent_service_ttl_check_and_anti_entropy(state_api: Any, reactor: Any) -> None:
    c = client(state_api)
    try:
        await call(
            c.agent.service.register,
            "api",
            service_id="api1",
            port=9000,
            tags=["t"],
            check=consul.Check.ttl("30s"),
        )
        services = await call(c.agent.services)
        assert services["api1"]["Port"] == 9000
        checks = await call(c.agent.checks)
        assert checks["service:api1"]["Status"] == "critical"

        def in_catalog_critical() -> Any:
            _, nodes = c.health.service("api")
            return nodes and nodes[0]["Checks"][-1]["Status"] == "critical"

        await eventually(in_catalog_critical, reactor)
        assert await call(c.agent.check.ttl_pass, "service:api1", notes="fine") is True

        def passing() -> Any:
            return c.health.service("api", passing=True)[1]

        [entry] = await eventually(passing, reactor)
        assert entry["Service"]["ID"] == "api1"
        assert entry["Checks"][-1]["Output"] == "fine"
        assert await call(c.agent.service.deregister, "api1") is True

        def gone() -> bool:
            return c.catalog.service("api")[1] == []

        await eventually(gone, reactor)
        assert "service:api1" not in await call(c.agent.checks)
    finally:
        c.http.session.close()


@pytest_twisted.ensureDeferred
async def test_agent_tcp_and_http_checks(state_api: Any, reactor: Any) -> None:
    c = client(state_api)
    try:
        await call(
            c.agent.check.register,
            "tcp-ok",
            consul.Check.tcp("127.0.0.1", state_api.port, "1s"),
        )
        await call(
            c.agent.check.register,
            "http-ok",
            consul.Check.http(f"{state_api.url}/v1/status/leader", "1s"),
        )
        await call(
            c.agent.check.register,
            "http-404",
            consul.Check.http(f"{state_api.url}/v1/nope", "1s"),
        )

        def settled() -> Any:
            checks = c.agent.checks()
            statuses = {k: checks[k]["Status"] for k in ("tcp-ok", "http-ok", "http-404")}
            want = {"tcp-ok": "passing", "http-ok": "passing", "http-404": "critical"}
            if statuses == want and checks["http-404"]["Output"]:
                return checks
            return None

        checks = await eventually(settled, reactor)
        assert checks["tcp-ok"]["Output"] == f"TCP connect 127.0.0.1:{state_api.port}: Success"
        assert checks["http-ok"]["Output"].startswith(
            f"HTTP GET {state_api.url}/v1/status/leader: 200 OK Output: "
        )
        assert "404 Not Found" in checks["http-404"]["Output"]
    finally:
        c.http.session.close()


@pytest_twisted.ensureDeferred
async def test_agent_register_rejects_reserved_meta(state_api: Any) -> None:
    c = client(state_api)
    try:
        with pytest.raises(consul.ConsulException, match="Key prefix 'consul-' is reserved"):
            await call(c.agent.service.register, "web", meta={"consul-wan-federation": "1"})
        assert "web" not in await call(c.agent.services)
    finally:
        c.http.session.close()
