"""Each HTTP route family alone, built with fakes and called through ``treq.testing.StubTreq``
(no sockets, no agent), and the composition of families into the agent's one API: prefixes
route to their family, 404/405 answer in every branch, a parked read answers through a branch,
a prefix cannot be mounted twice, and the API's prefix lookup never disagrees with the root's
branch routes (hypothesis over random paths)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.web.resource import IResource
from werkzeug.exceptions import HTTPException

from wanfedtx.catalog.errors import NoLeaderError
from wanfedtx.config import LoadOptions, RuntimeConfig, load
from wanfedtx.http.agent import AgentRoutes
from wanfedtx.http.agent_services import AgentServicesRoutes
from wanfedtx.http.app import API
from wanfedtx.http.catalog import CatalogRoutes
from wanfedtx.http.common import APIContext
from wanfedtx.http.family import RouteFamily
from wanfedtx.http.federation import FederationStateRoutes
from wanfedtx.http.gossip import GossipOpsRoutes, MembersRoutes
from wanfedtx.http.health import HealthRoutes
from wanfedtx.http.kv import KVRoutes
from wanfedtx.http.status import StatusRoutes
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.state import LocalState

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "200"))
BASE = "http://127.0.0.1:8500"
META = {"Index": 7, "KnownLeader": True, "LastContact": 0}


@attrs.define
class Reply:
    code: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    resource: IResource,
    method: str,
    path: str,
    body: bytes | None = None,
    flush: Callable[[], None] | None = None,
) -> Reply:
    """One request through StubTreq; ``flush`` runs between sending and reading (parked reads)."""
    stub = StubTreq(resource)
    d = stub.request(method, BASE + path, data=body)
    stub.flush()
    if flush is not None:
        flush()
        stub.flush()
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, f"{method} {path} did not answer"
    response = got[0]
    content: list[bytes] = []
    stub.content(response).addCallback(content.append)
    stub.flush()
    return Reply(response.code, response.headers, content[0])


@attrs.define
class FakeRPC:
    """An RPC table: ``replies[method]`` (a reply, an exception or a Deferred) per method."""

    replies: dict[str, Any] = attrs.field(factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)

    def __call__(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        self.calls.append((method, args))
        reply = self.replies[method]
        if isinstance(reply, Deferred):
            return reply
        if isinstance(reply, Exception):
            return fail(reply)
        return succeed(reply)

    def ctx(self) -> APIContext:
        return APIContext("dc1", self)


def header(reply: Reply, name: str) -> str | None:
    values = reply.headers.getRawHeaders(name)
    return values[0] if values else None


# -- each family alone ---------------------------------------------------------------------


def test_kv_put_then_get() -> None:
    store: dict[str, bytes] = {}

    def rpc(method: str, args: dict[str, Any]) -> Deferred[Any]:
        if method == "KVS.Apply":
            store[args["DirEnt"]["Key"]] = args["DirEnt"]["Value"]
            return succeed(True)
        key = args["Key"]
        entries = [{"Key": key, "Value": store[key]}] if key in store else []
        return succeed({**META, "Entries": entries})

    kv = KVRoutes(APIContext("dc1", rpc)).app.resource()
    put = call(kv, "PUT", "/v1/kv/a/b", b"hello")
    assert (put.code, put.body) == (200, b"true")
    assert store == {"a/b": b"hello"}
    got = call(kv, "GET", "/v1/kv/a/b")
    assert got.code == 200 and got.json() == [{"Key": "a/b", "Value": "aGVsbG8="}]
    assert header(got, "X-Consul-Index") == "7"
    assert header(got, "X-Consul-KnownLeader") == "true"
    raw = call(kv, "GET", "/v1/kv/a/b?raw")
    assert (raw.code, raw.body) == (200, b"hello")
    missing = call(kv, "GET", "/v1/kv/nope")
    assert (missing.code, missing.body) == (404, b"")
    assert call(kv, "POST", "/v1/kv/a").code == 405


def test_catalog_nodes() -> None:
    rpc = FakeRPC({"Catalog.ListNodes": {**META, "Nodes": [{"Node": "n1"}]}})
    reply = call(CatalogRoutes(rpc.ctx()).app.resource(), "GET", "/v1/catalog/nodes?dc=dc2&stale")
    assert reply.code == 200 and reply.json() == [{"Node": "n1"}]
    assert header(reply, "X-Consul-Index") == "7"
    method, args = rpc.calls[0]
    assert method == "Catalog.ListNodes"
    assert (args["Datacenter"], args["AllowStale"]) == ("dc2", True)


def test_health_service_passing_filters() -> None:
    nodes = [
        {"Node": "a", "Checks": [{"Status": "passing"}]},
        {"Node": "b", "Checks": [{"Status": "critical"}]},
    ]
    rpc = FakeRPC({"Health.ServiceNodes": {**META, "Nodes": nodes}})
    health = HealthRoutes(rpc.ctx()).app.resource()
    assert [n["Node"] for n in call(health, "GET", "/v1/health/service/web").json()] == ["a", "b"]
    assert [n["Node"] for n in call(health, "GET", "/v1/health/service/web?passing").json()] == [
        "a"
    ]
    bad = call(health, "GET", "/v1/health/state/bogus")
    assert (bad.code, bad.body) == (400, b"Invalid check state 'bogus'")


def test_status_leader_and_rpc_errors() -> None:
    rpc = FakeRPC({"Status.Leader": "127.0.0.1:8300", "Status.Peers": NoLeaderError()})
    status = StatusRoutes(rpc.ctx()).app.resource()
    leader = call(status, "GET", "/v1/status/leader")
    assert (leader.code, leader.json()) == (200, "127.0.0.1:8300")
    assert rpc.calls == [("Status.Leader", {"Datacenter": "dc1"})]
    peers = call(status, "GET", "/v1/status/peers")
    assert (peers.code, peers.body) == (500, b"No cluster leader")


def test_federation_state_list_and_missing_state() -> None:
    rpc = FakeRPC(
        {
            "FederationState.List": {**META, "States": None},
            "FederationState.Get": {**META, "State": None},
        }
    )
    fed = FederationStateRoutes(rpc.ctx()).app.resource()
    listed = call(fed, "GET", "/v1/internal/federation-states")
    assert (listed.code, listed.json()) == (200, [])
    missing = call(fed, "GET", "/v1/internal/federation-state/dc9")
    assert (missing.code, missing.body) == (404, b"")
    assert rpc.calls[1][1]["Datacenter"] == "dc9"


@attrs.define
class View:
    config: RuntimeConfig = attrs.field(
        factory=lambda: load(LoadOptions(dev=True, flags={"node_name": "n1"})).runtime
    )

    def member(self) -> dict[str, Any]:
        return {"Name": "n1"}

    def stats(self) -> dict[str, dict[str, str]]:
        return {"agent": {"checks": "0"}}


def test_agent_self() -> None:
    reply = call(AgentRoutes(View()).app.resource(), "GET", "/v1/agent/self")
    body = reply.json()
    assert reply.code == 200
    assert body["Config"]["NodeName"] == "n1"
    assert body["Member"] == {"Name": "n1"} and body["Stats"] == {"agent": {"checks": "0"}}


def test_agent_services_register_then_list() -> None:
    local = LocalState("n1")
    routes = AgentServicesRoutes(local, CheckRunners(local, None), "dc1").app.resource()
    reg = call(routes, "PUT", "/v1/agent/service/register", b'{"Name": "web", "Port": 80}')
    assert (reg.code, reg.body) == (200, b"")
    listed = call(routes, "GET", "/v1/agent/services").json()
    assert listed["web"]["Service"] == "web" and listed["web"]["Port"] == 80
    unknown = call(routes, "GET", "/v1/agent/service/nope")
    assert (unknown.code, unknown.body) == (404, b"unknown service ID: nope")


def test_members_without_pools() -> None:
    members = MembersRoutes(lambda: None, lambda: None).app.resource()
    lan = call(members, "GET", "/v1/agent/members")
    assert (lan.code, lan.body) == (200, b"[]")
    bad = call(members, "GET", "/v1/agent/members?wan=1&segment=a")
    assert (bad.code, bad.body) == (400, b"Cannot provide a segment with wan=true")


@attrs.define
class Ops:
    joined: list[tuple[list[str], bool]] = attrs.field(factory=list)
    forced: list[tuple[str, bool]] = attrs.field(factory=list)

    async def join(self, addrs: Sequence[str], wan: bool = False) -> int:
        if addrs[0] == "bad":
            raise ValueError("no such host")
        self.joined.append((list(addrs), wan))
        return 1

    async def leave_and_shutdown(self) -> None:
        return None

    def force_leave(self, node: str, prune: bool = False) -> None:
        self.forced.append((node, prune))


def test_gossip_join_force_leave_and_join_error() -> None:
    ops = Ops()
    routes = GossipOpsRoutes(ops).app.resource()
    assert call(routes, "PUT", "/v1/agent/join/10.0.0.1:8302?wan=1").code == 200
    assert ops.joined == [(["10.0.0.1:8302"], True)]
    assert call(routes, "PUT", "/v1/agent/force-leave/n2?prune").code == 200
    assert ops.forced == [("n2", True)]
    failed = call(routes, "PUT", "/v1/agent/join/bad")
    assert (failed.code, failed.body) == (500, b"no such host")


# -- every family: 404 and 405 from its own handlers ---------------------------------------


def all_families() -> list[RouteFamily]:
    rpc = FakeRPC()
    local = LocalState("n1")
    return [
        AgentRoutes(View()),
        MembersRoutes(lambda: None, lambda: None),
        GossipOpsRoutes(Ops()),
        AgentServicesRoutes(local, CheckRunners(local, None), "dc1"),
        CatalogRoutes(rpc.ctx()),
        HealthRoutes(rpc.ctx()),
        KVRoutes(rpc.ctx()),
        StatusRoutes(rpc.ctx()),
        FederationStateRoutes(rpc.ctx()),
    ]


# family index in all_families(), a path under its prefixes that no rule matches, and a route
# with a method it does not allow and the Allow header it answers.
MISSES = [
    (0, "/v1/agent/self/x", ("PUT", "/v1/agent/self", "GET")),
    (1, "/v1/agent/members/x", ("DELETE", "/v1/agent/members", "GET")),
    (2, "/v1/agent/leave/x", ("GET", "/v1/agent/join/a", "PUT")),
    (3, "/v1/agent/check/nope/c1", ("GET", "/v1/agent/check/register", "PUT")),
    (4, "/v1/catalog/nope", ("GET", "/v1/catalog/register", "PUT")),
    (5, "/v1/health/nope/x", ("PUT", "/v1/health/node/n1", "GET")),
    (6, "/v1/kv//x", ("POST", "/v1/kv/k", "DELETE, GET, PUT")),
    (7, "/v1/status/nope", ("POST", "/v1/status/peers", "GET")),
    (8, "/v1/internal/federation-states/x", ("PUT", "/v1/internal/federation-states", "GET")),
]


@pytest.mark.parametrize(("index", "unknown", "wrong"), MISSES, ids=lambda v: str(v))
def test_each_family_answers_404_and_405_itself(
    index: int, unknown: str, wrong: tuple[str, str, str]
) -> None:
    resource = all_families()[index].app.resource()
    missing = call(resource, "GET", unknown)
    assert (missing.code, missing.body) == (404, b"404 page not found")
    method, path, allow = wrong
    reply = call(resource, method, path)
    assert (reply.code, reply.body) == (405, f"method {method} not allowed".encode())
    assert header(reply, "Allow") == allow


def test_every_family_has_its_404_405_case() -> None:
    assert sorted(i for i, _, _ in MISSES) == list(range(len(all_families())))


@pytest.mark.parametrize("family", all_families(), ids=lambda f: type(f).__name__)
def test_each_rule_lies_under_one_of_its_family_prefixes(family: RouteFamily) -> None:
    for rule in family.app.url_map.iter_rules():
        assert any(
            rule.rule == p.rstrip("/") or rule.rule.startswith(p.rstrip("/") + "/")
            for p in family.prefixes
        ), rule.rule


# -- composition ---------------------------------------------------------------------------


def test_composed_api_routes_each_prefix_to_its_family() -> None:
    rpc = FakeRPC(
        {
            "Status.Leader": "127.0.0.1:8300",
            "Catalog.ListNodes": {**META, "Nodes": []},
            "FederationState.List": {**META, "States": [{"Datacenter": "dc1"}]},
        }
    )
    local = LocalState("n1")
    api = API(
        [
            AgentRoutes(View()),
            MembersRoutes(lambda: None, lambda: None),
            AgentServicesRoutes(local, CheckRunners(local, None), "dc1"),
            CatalogRoutes(rpc.ctx()),
            StatusRoutes(rpc.ctx()),
            FederationStateRoutes(rpc.ctx()),
        ]
    )
    root = api.resource()
    assert call(root, "GET", "/v1/status/leader").json() == "127.0.0.1:8300"
    assert call(root, "GET", "/v1/catalog/nodes").json() == []
    assert call(root, "GET", "/v1/agent/self").json()["Config"]["NodeName"] == "n1"
    assert call(root, "GET", "/v1/agent/members").body == b"[]"
    assert call(root, "GET", "/v1/agent/services").json() == {}
    assert call(root, "GET", "/v1/internal/federation-states").json() == [{"Datacenter": "dc1"}]
    # Outside every prefix: the root's 404; inside one: the family's 404 and 405.
    for path in ("/v1/nope", "/v1/statusx", "/v1/kv/a", "/v1/agent/selfx"):
        assert (call(root, "GET", path).code, call(root, "GET", path).body) == (
            404,
            b"404 page not found",
        ), path
    assert call(root, "GET", "/v1/status/nope").body == b"404 page not found"
    wrong = call(root, "PUT", "/v1/status/leader")
    assert (wrong.code, wrong.body, header(wrong, "Allow")) == (
        405,
        b"method PUT not allowed",
        "GET",
    )
    assert {r.rule for r in api.rules()} >= {"/v1/status/leader", "/v1/agent/service/register"}


def test_kv_without_its_slash_is_redirected_only_for_kv_methods() -> None:
    root = API([KVRoutes(FakeRPC().ctx())]).resource()
    stub = StubTreq(root)
    d = stub.request("GET", BASE + "/v1/kv", allow_redirects=False)
    stub.flush()
    got: list[Any] = []
    d.addBoth(got.append)
    assert got[0].code == 308
    assert got[0].headers.getRawHeaders("Location") == [BASE + "/v1/kv/"]
    assert call(root, "PATCH", "/v1/kv").code == 404


def test_a_parked_read_answers_through_its_branch() -> None:
    pending: Deferred[Any] = Deferred()
    rpc = FakeRPC({"KVS.Get": pending})
    root = API([StatusRoutes(rpc.ctx()), KVRoutes(rpc.ctx())]).resource()

    def write() -> None:
        pending.callback({**META, "Index": 9, "Entries": [{"Key": "k", "Value": b"v"}]})

    reply = call(root, "GET", "/v1/kv/k?index=8&wait=1s", flush=write)
    assert reply.code == 200 and reply.json() == [{"Key": "k", "Value": "dg=="}]
    assert header(reply, "X-Consul-Index") == "9"
    assert rpc.calls[0][1]["MinQueryIndex"] == 8


def test_a_prefix_mounted_twice_is_refused() -> None:
    rpc = FakeRPC()
    with pytest.raises(ValueError, match="/v1/status"):
        API([StatusRoutes(rpc.ctx()), StatusRoutes(rpc.ctx())])


SEGMENTS = [
    "", "v1", "kv", "k", "agent", "self", "selfx", "service", "services", "check", "checks",
    "members", "join", "leave", "status", "leader", "catalog", "health", "internal",
    "federation-state", "federation-states", "%6Bv", "x",
]


PREFIXES = sorted({p for f in all_families() for p in f.prefixes})
TAILS = st.lists(st.sampled_from(SEGMENTS), max_size=4)
PREFIX_SEGMENTS = st.sampled_from(PREFIXES).map(lambda p: p.strip("/").split("/"))
# Random paths, paths under a prefix, and paths under a prefix's parent.
PATHS = st.one_of(
    TAILS,
    st.builds(lambda p, t: p + t, PREFIX_SEGMENTS, TAILS),
    st.builds(lambda p, t: p[:-1] + t, PREFIX_SEGMENTS, TAILS),
)


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(PATHS)
def test_the_prefix_lookup_agrees_with_the_root_routes(segments: list[str]) -> None:
    api = API(all_families())
    postpath = [s.encode() for s in segments]
    picked = api.pick(postpath)
    # The path Klein's root matches for this postpath (as klein's extractURLparts builds it).
    path = "/".join(segments)
    path = path if not path or path.startswith("/") else "/" + path
    adapter = api.root.url_map.bind("x", "", path_info=path)
    try:
        rule, _ = adapter.match(return_rule=True)
    except HTTPException:
        assert picked is None, path
        return
    if picked is not None:
        assert api.by_endpoint[rule.endpoint] is picked, path
    elif segments[:2] == ["v1", "kv"] and len(segments) > 2 and segments[2]:
        raise AssertionError(f"{path}: the common case was not looked up")
