"""Enforcement on the RPC handlers: KV, catalog, health, federation states (the reference's
matrix), filtered lists with ResultsFilteredByACLs, nothing written when denied."""

from __future__ import annotations

from typing import Any

import pytest
from acl_support import MASTER, Net
from twisted.internet import task

from wanfedtx.acl.model import ACLError, PermissionDeniedError


def _setup(net: Net, rules: dict[str, str], dcs: tuple[str, ...] = ("dc1",)) -> dict[str, str]:
    """Primary dc1 (+ others), policies by name -> token secrets by name."""
    for dc in dcs:
        net.add(dc, "dc1", initial_management=MASTER)
        net.servers[dc].startService()
    secrets = {}
    for name, text in rules.items():
        net.rpc("dc1", "ACL.PolicySet", {"Token": MASTER, "Policy": {"Name": name, "Rules": text}})
        tok = net.rpc(
            "dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"Policies": [{"Name": name}]}}
        )
        secrets[name] = tok["SecretID"]
    return secrets


def kv_set(token: str, key: str, op: str = "set") -> dict[str, Any]:
    return {"Datacenter": "dc1", "Op": op, "DirEnt": {"Key": key, "Value": b"v"}, "Token": token}


def test_kv_write_and_read(net: Net) -> None:
    s = _setup(net, {"app": 'key_prefix "app/" { policy = "write" }'})
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "KVS.Apply", kv_set("", "app/x"))
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "KVS.Apply", kv_set(s["app"], "other"))
    # a lowercase field name does not slip past the check
    with pytest.raises(PermissionDeniedError):
        net.rpc(
            "dc1",
            "KVS.Apply",
            {"Op": "set", "dirent": {"Key": "other", "Value": b"v"}, "Token": s["app"]},
        )
    assert net.servers["dc1"].fsm.state.kvs_get(None, "other")[1] is None
    assert net.rpc("dc1", "KVS.Apply", kv_set(s["app"], "app/x")) is True
    assert net.rpc("dc1", "KVS.Apply", kv_set(MASTER, "other")) is True
    got = net.rpc("dc1", "KVS.Get", {"Key": "app/x", "Token": s["app"]})
    assert got["Entries"][0]["Key"] == "app/x"
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "KVS.Get", {"Key": "other", "Token": s["app"]})
    listed = net.rpc("dc1", "KVS.List", {"Key": "", "Token": s["app"]})
    assert [e["Key"] for e in listed["Entries"]] == ["app/x"]
    assert listed["ResultsFilteredByACLs"] is True
    full = net.rpc("dc1", "KVS.List", {"Key": "", "Token": MASTER})
    assert "ResultsFilteredByACLs" not in full
    keys = net.rpc("dc1", "KVS.ListKeys", {"Prefix": "", "Token": s["app"]})
    assert keys["Keys"] == ["app/x"]
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "KVS.Apply", kv_set(s["app"], "", op="delete-tree"))


def test_malformed_and_unknown_tokens(net: Net) -> None:
    _setup(net, {})
    for bad in ("nope", "6a1253d2-0000-0000-0000-000000000000", "x" * 5000, 7, ["a"]):
        with pytest.raises(ACLError, match="ACL not found"):
            net.rpc("dc1", "KVS.Apply", kv_set(bad, "k"))  # type: ignore[arg-type]
    assert net.servers["dc1"].fsm.state.kvs_list(None, "")[1] == []


def register(node: str, service: str | None, token: str) -> dict[str, Any]:
    args: dict[str, Any] = {
        "Datacenter": "dc1",
        "Node": node,
        "Address": "10.0.0.1",
        "Token": token,
    }
    if service:
        args["Service"] = {"ID": service, "Service": service, "Port": 80}
    return args


def test_catalog_register_and_filtered_reads(net: Net) -> None:
    s = _setup(
        net,
        {
            "web": 'node "n1" { policy = "write" }\nservice "web" { policy = "write" }',
            "reader": 'node_prefix "n1" { policy = "read" }\nservice "web" { policy = "read" }',
        },
    )
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "Catalog.Register", register("n1", "web", ""))
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "Catalog.Register", register("n1", "db", s["web"]))
    assert net.rpc("dc1", "Catalog.Register", register("n1", "web", s["web"])) is True
    net.rpc("dc1", "Catalog.Register", register("n2", "db", MASTER))
    nodes = net.rpc("dc1", "Catalog.ListNodes", {"Token": s["reader"]})
    assert sorted(n["Node"] for n in nodes["Nodes"]) == ["n1"]
    assert nodes["ResultsFilteredByACLs"] is True
    services = net.rpc("dc1", "Catalog.ListServices", {"Token": s["reader"]})
    assert set(services["Services"]) == {"web"}
    health = net.rpc("dc1", "Health.ServiceNodes", {"ServiceName": "db", "Token": s["reader"]})
    assert health["Nodes"] == [] and health["ResultsFilteredByACLs"] is True
    ns = net.rpc("dc1", "Catalog.NodeServices", {"Node": "n2", "Token": s["reader"]})
    assert ns["NodeServices"] is None
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "Catalog.Deregister", {"Node": "n2", "Token": s["web"]})
    assert net.rpc(
        "dc1", "Catalog.Deregister", {"Node": "n1", "ServiceID": "web", "Token": s["web"]}
    )


def gw(node: str, dc: str) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": "10.0.0.2", "Datacenter": dc},
        "Service": {
            "Kind": "mesh-gateway",
            "ID": "mesh-gateway",
            "Service": "mesh-gateway",
            "Port": 443,
            "Meta": {"consul-wan-federation": "1"},
        },
        "Checks": [],
    }


MATRIX = {
    "op-read": 'operator = "read"',
    "op-write": 'operator = "write"',
    "gw2-read": 'node "gw2" { policy = "read" }\nservice_prefix "" { policy = "read" }',
    "gw-node-only": 'node_prefix "" { policy = "read" }',
}


@pytest.mark.parametrize("serving", ["dc1", "dc2"])
def test_federation_state_acl_matrix(serving: str) -> None:
    net = Net(task.Clock())
    s = _setup(net, MATRIX, dcs=("dc1", "dc2"))
    for dc, node in (("dc1", "gw1"), ("dc2", "gw2")):
        state = {"Datacenter": dc, "MeshGateways": [gw(node, dc)]}
        with pytest.raises(PermissionDeniedError):
            net.rpc(
                "dc1",
                "FederationState.Apply",
                {"Op": "upsert", "State": state, "Token": s["op-read"]},
            )
        net.rpc(
            "dc1", "FederationState.Apply", {"Op": "upsert", "State": state, "Token": s["op-write"]}
        )
    # the reads are served by dc1 (the states live there until replication copies them)
    ask = {"Datacenter": "dc1"}
    with pytest.raises(PermissionDeniedError):
        net.rpc(serving, "FederationState.List", {**ask, "Token": ""})
    listed = net.rpc(serving, "FederationState.List", {**ask, "Token": s["op-read"]})
    assert [st["Datacenter"] for st in listed["States"]] == ["dc1", "dc2"]
    with pytest.raises(PermissionDeniedError):
        net.rpc(
            serving,
            "FederationState.Get",
            {"TargetDatacenter": "dc1", "Datacenter": "dc2", "Token": s["gw2-read"]},
        )
    got = net.rpc(
        serving,
        "FederationState.Get",
        {"TargetDatacenter": "dc1", "Datacenter": "dc2", "Token": s["op-read"]},
    )
    assert got["State"]["Datacenter"] == "dc2"
    gws = net.rpc(serving, "FederationState.ListMeshGateways", {**ask, "Token": s["gw2-read"]})
    assert list(gws["DatacenterNodes"]) == ["dc2"] and gws["ResultsFilteredByACLs"] is True
    none = net.rpc(serving, "FederationState.ListMeshGateways", {**ask, "Token": s["gw-node-only"]})
    assert none["DatacenterNodes"] == {}
    everything = net.rpc(serving, "FederationState.ListMeshGateways", {**ask, "Token": MASTER})
    assert sorted(everything["DatacenterNodes"]) == ["dc1", "dc2"]


def test_status_needs_nothing_and_unknown_methods_need_management(net: Net) -> None:
    _setup(net, {})
    assert net.rpc("dc1", "Status.Leader", {"Token": ""})
    # registered after the ACL layer was installed: still checked
    net.servers["dc1"].handlers["Made.Up"] = net.servers["dc1"].endpoints.handlers()[
        "Status.Leader"
    ]
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "Made.Up", {"Token": ""})


FAMILIES: list[tuple[str, dict[str, Any]]] = [
    ("KVS.Apply", {"Op": "set", "DirEnt": {"Key": "k", "Value": b"v"}}),
    ("KVS.Apply", {"Op": "delete-tree", "DirEnt": {"Key": ""}}),
    ("KVS.Get", {"Key": "k"}),
    ("KVS.List", {"Key": ""}),
    ("Catalog.Register", {"Node": "n", "Address": "10.0.0.9"}),
    ("Catalog.Deregister", {"Node": "n"}),
    ("Catalog.ListNodes", {}),
    ("Health.ServiceNodes", {"ServiceName": "web"}),
    ("Internal.ServiceDump", {}),
    ("FederationState.Apply", {"Op": "upsert", "State": {"Datacenter": "dc1"}}),
    ("FederationState.List", {}),
    ("FederationState.ListMeshGateways", {}),
    ("ACL.PolicySet", {"Policy": {"Name": "p"}}),
    ("ACL.TokenSet", {"ACLToken": {}}),
    ("ACL.TokenList", {}),
    ("ACL.TokenDelete", {"TokenID": "6a1253d2-1785-24fd-91c2-f8e78c745512"}),
]


def test_ten_thousand_random_tokens_never_crash_and_write_nothing(net: Net) -> None:
    import random

    _setup(net, {})
    state = net.servers["dc1"].fsm.state
    before = (
        state.kvs_list(None, "")[1],
        state.acl_policy_list(None)[1],
        state.acl_token_list(None)[1],
        state.federation_state_list(None)[1],
    )
    rng = random.Random(15)
    alphabet = "0123456789abcdef-xyz\x00é "
    for i in range(10_000):
        shape = i % 4
        if shape == 0:
            token: Any = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 50)))
        elif shape == 1:
            token = "-".join(
                "".join(rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)
            )
        elif shape == 2:
            token = rng.choice(["allow", "deny", "manage", "", "anonymous", None, 5, ["x"], {}])
        else:
            token = rng.randbytes(rng.randrange(0, 20)).decode("latin-1")
        method, args = FAMILIES[i % len(FAMILIES)]
        try:
            reply = net.rpc("dc1", method, {**args, "Token": token})
        except ACLError:
            continue  # Permission denied, ACL not found, Cannot resolve root ACL
        # allowed: only reads (anonymous, default deny -> filtered to nothing)
        assert method in (
            "KVS.List",
            "Catalog.ListNodes",
            "Health.ServiceNodes",
            "Internal.ServiceDump",
            "FederationState.ListMeshGateways",
        ), method
        assert isinstance(reply, dict)
    after = (
        state.kvs_list(None, "")[1],
        state.acl_policy_list(None)[1],
        state.acl_token_list(None)[1],
        state.federation_state_list(None)[1],
    )
    assert after == before


def test_rpc_table_guards_endpoints_registered_later(net: Net) -> None:
    from wanfedtx.rpc.endpoints import Endpoints as RPCTable

    _setup(net, {})
    table = RPCTable()
    cat = net.servers["dc1"]
    table.register("KVS.Apply", cat.endpoints.handlers()["KVS.Apply"])
    net.acls["dc1"].guard(table)
    table.register("KVS.Get", cat.endpoints.handlers()["KVS.Get"])
    for name, args in (("KVS.Apply", kv_set("", "k")), ("KVS.Get", {"Key": "k", "Token": ""})):
        failures: list[Any] = []
        table.lookup(name)(args).addErrback(failures.append)
        assert failures and failures[0].check(PermissionDeniedError)
    assert table.lookup("KVS.Get") is table.lookup("KVS.Get")  # built once


def test_key_list_policy_needs_list_on_the_prefix() -> None:
    net = Net(task.Clock())
    s = _setup(
        net,
        {
            "reader": 'key_prefix "" { policy = "read" }',
            "lister": 'key_prefix "app/" { policy = "list" }',
        },
    )
    net.acls["dc1"].resolver.key_list_policy = True
    net.rpc("dc1", "KVS.Apply", kv_set(MASTER, "app/x"))
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "KVS.List", {"Key": "app/", "Token": s["reader"]})
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "KVS.ListKeys", {"Prefix": "app/", "Token": s["reader"]})
    assert net.rpc("dc1", "KVS.List", {"Key": "app/", "Token": s["lister"]})["Entries"]
    assert net.rpc("dc1", "KVS.Get", {"Key": "app/x", "Token": s["reader"]})["Entries"]
