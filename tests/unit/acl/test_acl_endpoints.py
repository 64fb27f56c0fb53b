"""ACL.* endpoints over in-process datacenters: leader initialization, bootstrap, policies,
tokens, permission checks and Consul's refusals (nothing written)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from acl_support import MASTER, Net

from wanfedtx.acl.model import (
    ANONYMOUS_ACCESSOR,
    GLOBAL_MANAGEMENT_ID,
    HIDDEN,
    ACLError,
    PermissionDeniedError,
)
from wanfedtx.acl.rules import RulesError


def primary(net: Net, **kw: Any) -> Net:
    net.add("dc1", "dc1", **kw)
    net.servers["dc1"].startService()
    return net


def test_leader_creates_builtins_and_master_token(net: Net) -> None:
    primary(net, initial_management=MASTER)
    state = net.servers["dc1"].fsm.state
    _, gm = state.acl_policy_get(None, GLOBAL_MANAGEMENT_ID)
    assert gm is not None and gm["Name"] == "global-management"
    _, anon = state.acl_token_get(None, ANONYMOUS_ACCESSOR)
    assert anon is not None and anon["SecretID"] == "anonymous" and anon["Policies"] == []
    _, master = state.acl_token_get_by_secret(None, MASTER)
    assert master is not None and master["Description"] == "Master Token"
    assert state.acl_bootstrap_index() > 0  # the master token consumed the bootstrap
    with pytest.raises(PermissionDeniedError, match=r"ACL bootstrap no longer allowed \(reset"):
        net.rpc("dc1", "ACL.BootstrapTokens", {})


def test_bootstrap_once_then_refused(net: Net) -> None:
    primary(net)
    tok = net.rpc("dc1", "ACL.BootstrapTokens", {})
    assert tok["Description"] == "Bootstrap Token (Global Management)"
    assert tok["Policies"] == [{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}]
    assert tok["Local"] is False
    with pytest.raises(PermissionDeniedError) as exc:
        net.rpc("dc1", "ACL.BootstrapTokens", {})
    idx = net.servers["dc1"].fsm.state.acl_bootstrap_index()
    assert (
        str(exc.value) == f"Permission denied: ACL bootstrap no longer allowed (reset index: {idx})"
    )


def test_bootstrap_reset_file(net: Net, tmp_path: Path) -> None:
    primary(net, data_dir=str(tmp_path))
    net.rpc("dc1", "ACL.BootstrapTokens", {})
    idx = net.servers["dc1"].fsm.state.acl_bootstrap_index()
    (tmp_path / "acl-bootstrap-reset").write_text("999")
    with pytest.raises(PermissionDeniedError, match="Invalid bootstrap reset index"):
        net.rpc("dc1", "ACL.BootstrapTokens", {})
    (tmp_path / "acl-bootstrap-reset").write_text(f"{idx}\n")
    assert net.rpc("dc1", "ACL.BootstrapTokens", {})["SecretID"]
    assert not (tmp_path / "acl-bootstrap-reset").exists()


def test_bootstrap_in_a_secondary_is_disabled(net: Net) -> None:
    primary(net)
    net.add("dc2", "dc1")
    with pytest.raises(ACLError, match="ACL support disabled"):
        net.rpc("dc2", "ACL.BootstrapTokens", {})


def test_policy_and_token_lifecycle(net: Net) -> None:
    primary(net, initial_management=MASTER)
    pol = net.rpc(
        "dc1",
        "ACL.PolicySet",
        {
            "Token": MASTER,
            "Policy": {"Name": "kv-read", "Rules": 'key_prefix "" { policy = "read" }'},
        },
    )
    assert pol["ID"] and pol["Hash"] and pol["CreateIndex"] == pol["ModifyIndex"]
    tok = net.rpc(
        "dc1",
        "ACL.TokenSet",
        {
            "Token": MASTER,
            "ACLToken": {"Description": "reader", "Policies": [{"Name": "kv-read"}]},
        },
    )
    assert tok["Policies"] == [{"ID": pol["ID"], "Name": "kv-read"}]
    authz = net.acls["dc1"].resolver.authorizer(tok["SecretID"], 0)
    assert authz.key_read("x") and not authz.key_write("x") and not authz.acl_read()
    # the token reads itself, not others
    me = net.rpc("dc1", "ACL.TokenRead", {"TokenID": tok["SecretID"], "TokenIDType": "secret"})
    assert me["Token"]["AccessorID"] == tok["AccessorID"]
    with pytest.raises(PermissionDeniedError):
        net.rpc("dc1", "ACL.TokenRead", {"Token": tok["SecretID"], "TokenID": tok["AccessorID"]})
    # a renamed policy shows its new name in the token
    net.rpc(
        "dc1",
        "ACL.PolicySet",
        {
            "Token": MASTER,
            "Policy": {
                "ID": pol["ID"],
                "Name": "kv-read-2",
                "Rules": 'key_prefix "" { policy = "read" }',
            },
        },
    )
    listed = net.rpc("dc1", "ACL.TokenList", {"Token": MASTER})["Tokens"]
    mine = [t for t in listed if t["AccessorID"] == tok["AccessorID"]]
    assert mine[0]["Policies"][0]["Name"] == "kv-read-2" and "SecretID" not in mine[0]
    assert net.rpc("dc1", "ACL.TokenDelete", {"Token": MASTER, "TokenID": tok["AccessorID"]})
    assert net.servers["dc1"].fsm.state.acl_token_get(None, tok["AccessorID"])[1] is None


def test_read_without_write_hides_secret(net: Net) -> None:
    primary(net, initial_management=MASTER)
    net.rpc(
        "dc1", "ACL.PolicySet", {"Token": MASTER, "Policy": {"Name": "r", "Rules": 'acl = "read"'}}
    )
    reader = net.rpc(
        "dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"Policies": [{"Name": "r"}]}}
    )
    got = net.rpc(
        "dc1", "ACL.TokenRead", {"Token": reader["SecretID"], "TokenID": reader["AccessorID"]}
    )
    assert got["Token"]["SecretID"] == HIDDEN


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        ({"Name": ""}, "Invalid Policy: no Name is set"),
        ({"Name": "a b"}, "Invalid Policy: invalid Name. Only alphanumeric"),
        ({"Name": "x", "Rules": 'key "a" { policy = "nope" }'}, "Invalid key policy"),
        ({"Name": "x", "Rules": "key {"}, "Failed to parse ACL rules: "),
        ({"Name": "global-management"}, 'A Policy with Name "global-management" already exists'),
        ({"Name": "x", "ID": "nope"}, "Policy ID invalid UUID"),
        (
            {"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management", "Rules": ""},
            "Changing the Rules for the builtin global-management policy is not permitted",
        ),
        ("not an object", "Request decode failed"),
        ({"Name": "x", "Datacenters": ["nowhere"]}, 'Invalid Policy: unknown datacenter "nowhere"'),
        ({"Name": "x", "Datacenters": "dc1"}, "Request decode failed"),
    ],
)
def test_bad_policies_are_refused_and_nothing_written(net: Net, policy: Any, error: str) -> None:
    primary(net, initial_management=MASTER)
    before = net.servers["dc1"].fsm.state.acl_policy_list(None)
    with pytest.raises((ACLError, RulesError), match=error.replace("(", r"\(").replace(".", r"\.")):
        net.rpc("dc1", "ACL.PolicySet", {"Token": MASTER, "Policy": policy})
    assert net.servers["dc1"].fsm.state.acl_policy_list(None) == before


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ({"AccessorID": "nope"}, "Invalid Token: AccessorID is not a valid UUID"),
        ({"SecretID": "00000000-0000-0000-0000-000000000009"}, "are reserved"),
        ({"SecretID": MASTER}, "Invalid Token: SecretID is already in use"),
        ({"Policies": [{"Name": "missing"}]}, 'No such ACL policy with name "missing"'),
        ({"Rules": 'key "" {}'}, "Rules cannot be specified for this token"),
        ({"Policies": "x"}, "Request decode failed"),
    ],
)
def test_bad_tokens_are_refused(net: Net, token: Any, error: str) -> None:
    primary(net, initial_management=MASTER)
    before = net.servers["dc1"].fsm.state.acl_token_list(None)
    with pytest.raises(ACLError, match=error):
        net.rpc("dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": token})
    assert net.servers["dc1"].fsm.state.acl_token_list(None) == before


def test_permission_denied_without_token(net: Net) -> None:
    primary(net, initial_management=MASTER)
    for method, args in [
        ("ACL.PolicySet", {"Policy": {"Name": "x"}}),
        ("ACL.PolicyList", {}),
        ("ACL.TokenList", {}),
        ("ACL.TokenSet", {"ACLToken": {}}),
    ]:
        with pytest.raises(PermissionDeniedError):
            net.rpc("dc1", method, args)
    with pytest.raises(ACLError, match="ACL not found"):
        net.rpc("dc1", "ACL.PolicyList", {"Token": "f3f5d3b7-0000-4000-8000-000000000000"})
    with pytest.raises(ACLError, match="Cannot resolve root ACL"):
        net.rpc("dc1", "ACL.PolicyList", {"Token": "manage"})


def test_refused_deletes(net: Net) -> None:
    primary(net, initial_management=MASTER)
    with pytest.raises(ACLError, match="Delete operation not permitted on the anonymous token"):
        net.rpc("dc1", "ACL.TokenDelete", {"Token": MASTER, "TokenID": ANONYMOUS_ACCESSOR})
    with pytest.raises(ACLError, match="builtin global-management policy"):
        net.rpc("dc1", "ACL.PolicyDelete", {"Token": MASTER, "PolicyID": GLOBAL_MANAGEMENT_ID})
    _, me = net.servers["dc1"].fsm.state.acl_token_get_by_secret(None, MASTER)
    assert me is not None
    with pytest.raises(ACLError, match="Deletion of the request's authorization token"):
        net.rpc("dc1", "ACL.TokenDelete", {"Token": MASTER, "TokenID": me["AccessorID"]})


def test_writes_from_a_secondary_land_in_the_primary(net: Net) -> None:
    primary(net, initial_management=MASTER)
    net.add("dc2", "dc1")
    net.servers["dc2"].startService()
    # the secondary has no ACL data of its own yet (replication comes later): the primary
    # authorizes the forwarded write with the same token
    pol = net.rpc("dc2", "ACL.PolicySet", {"Token": MASTER, "Policy": {"Name": "p"}})
    assert ("dc1", "ACL.PolicySet") in net.calls
    assert net.servers["dc1"].fsm.state.acl_policy_get(None, pol["ID"])[1] is not None


def test_acls_disabled(net: Net) -> None:
    primary(net, enabled=False)
    with pytest.raises(ACLError, match="ACL support disabled"):
        net.rpc("dc1", "ACL.BootstrapTokens", {})
    assert net.acls["dc1"].resolver.authorizer("whatever", 0).acl_write() is False
    assert net.acls["dc1"].resolver.authorizer("whatever", 0).key_write("k")


def test_acl_tables_survive_snapshot_and_restore(net: Net) -> None:
    from wanfedtx.state import StateStore

    primary(net, initial_management=MASTER)
    state = net.servers["dc1"].fsm.state
    copy = StateStore()
    copy.restore_chunks(list(state.snapshot_chunks()))
    assert (
        copy.acl_token_get_by_secret(None, MASTER)[1]
        == state.acl_token_get_by_secret(None, MASTER)[1]
    )
    assert copy.acl_policy_list(None) == state.acl_policy_list(None)
    assert copy.acl_bootstrap_index() == state.acl_bootstrap_index() > 0


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"ExpirationTTL": "30s"},
            r"ExpirationTime cannot be less than 1m0s in the future \(was 30s\)",
        ),
        (
            {"ExpirationTTL": "25h"},
            r"ExpirationTime cannot be more than 24h0m0s in the future \(was 25h0m0s\)",
        ),
        ({"ExpirationTTL": "-1h"}, "Token Expiration TTL '-1h' should be > 0"),
        ({"ExpirationTTL": "1h", "ExpirationTime": "2030-01-01T00:00:00Z"}, "cannot both be set"),
        ({"ExpirationTime": "1970-01-01T00:00:00Z"}, "ExpirationTime cannot be before CreateTime"),
        ({"ExpirationTTL": "soon"}, "Request decode failed"),
    ],
)
def test_bad_expirations(net: Net, fields: dict[str, str], error: str) -> None:
    primary(net, initial_management=MASTER)
    net.clock.advance(1_700_000_000)
    with pytest.raises(ACLError, match=error):
        net.rpc("dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": fields})


def test_expired_token_is_not_found_and_not_listed(net: Net) -> None:
    primary(net, initial_management=MASTER)
    net.clock.advance(1_700_000_000)
    tok = net.rpc("dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"ExpirationTTL": "1h"}})
    assert tok["ExpirationTime"] == "2023-11-14T23:13:20Z"
    assert net.acls["dc1"].resolver.token(tok["SecretID"], net.clock.seconds())
    with pytest.raises(ACLError, match="Cannot change expiration time"):
        net.rpc(
            "dc1",
            "ACL.TokenSet",
            {
                "Token": MASTER,
                "Create": False,
                "ACLToken": {"AccessorID": tok["AccessorID"], "ExpirationTTL": "2h"},
            },
        )
    net.clock.advance(3601)
    with pytest.raises(ACLError, match="ACL not found"):
        net.acls["dc1"].resolver.token(tok["SecretID"], net.clock.seconds())
    listed = net.rpc("dc1", "ACL.TokenList", {"Token": MASTER})["Tokens"]
    assert tok["AccessorID"] not in [t["AccessorID"] for t in listed]
