"""ACL replication into a secondary: policies and global tokens copied, changes and deletes
followed, local tokens kept, status and errors reported, a replicated token works there."""

from __future__ import annotations

from acl_support import MASTER, Net
from twisted.internet import task

from wanfedtx.acl.model import GLOBAL_MANAGEMENT_ID


def setup(token: str = MASTER) -> Net:
    net = Net(task.Clock())
    net.add("dc1", "dc1", initial_management=MASTER)
    net.servers["dc1"].startService()
    net.add("dc2", "dc1", replication_token=token)
    net.servers["dc2"].startService()
    return net


def test_policies_and_global_tokens_replicate() -> None:
    net = setup()
    pol = net.rpc(
        "dc1",
        "ACL.PolicySet",
        {"Token": MASTER, "Policy": {"Name": "kv", "Rules": 'key_prefix "" { policy = "read" }'}},
    )
    tok = net.rpc(
        "dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"Policies": [{"Name": "kv"}]}}
    )
    net.clock.advance(1)
    dc2 = net.servers["dc2"].fsm.state
    assert dc2.acl_policy_get(None, GLOBAL_MANAGEMENT_ID)[1] is not None
    assert dc2.acl_policy_get(None, pol["ID"])[1]["Hash"] == pol["Hash"]
    assert dc2.acl_token_get_by_secret(None, tok["SecretID"])[1] is not None
    # the token works in the secondary
    authz = net.acls["dc2"].resolver.authorizer(tok["SecretID"], 0)
    assert authz.key_read("a") and not authz.key_write("a")
    # a change and a delete follow
    net.rpc(
        "dc1",
        "ACL.PolicySet",
        {
            "Token": MASTER,
            "Policy": {
                "ID": pol["ID"],
                "Name": "kv",
                "Rules": 'key_prefix "" { policy = "write" }',
            },
        },
    )
    net.rpc("dc1", "ACL.TokenDelete", {"Token": MASTER, "TokenID": tok["AccessorID"]})
    net.clock.advance(1)
    assert "write" in dc2.acl_policy_get(None, pol["ID"])[1]["Rules"]
    assert dc2.acl_token_get(None, tok["AccessorID"])[1] is None
    status = net.rpc("dc2", "ACL.ReplicationStatus", {})
    assert status["Enabled"] and status["Running"] and status["SourceDatacenter"] == "dc1"
    assert status["ReplicatedTokenIndex"] > 0 and status["LastSuccess"] != "0001-01-01T00:00:00Z"
    assert net.rpc("dc1", "ACL.ReplicationStatus", {})["Enabled"] is False


def test_read_only_replication_token_is_an_error_with_backoff() -> None:
    net = Net(task.Clock())
    net.add("dc1", "dc1", initial_management=MASTER)
    net.servers["dc1"].startService()
    net.rpc(
        "dc1", "ACL.PolicySet", {"Token": MASTER, "Policy": {"Name": "r", "Rules": 'acl = "read"'}}
    )
    reader = net.rpc(
        "dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"Policies": [{"Name": "r"}]}}
    )
    net.add("dc2", "dc1", replication_token=reader["SecretID"])
    net.servers["dc2"].startService()
    net.clock.advance(1)
    status = net.acls["dc2"].endpoints.status
    assert "does not grant acl:write" in status["LastErrorMessage"]
    assert status["LastError"] != "0001-01-01T00:00:00Z"
    # policies did replicate; tokens did not
    assert net.servers["dc2"].fsm.state.acl_policy_list(None)[1]
    assert net.servers["dc2"].fsm.state.acl_token_list(None)[1] == []


def test_primary_unreachable_keeps_replicated_tokens() -> None:
    net = setup()
    tok = net.rpc("dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"Description": "x"}})
    net.clock.advance(1)
    net.down.add("dc1")
    net.clock.advance(10)
    assert net.acls["dc2"].endpoints.status["LastErrorMessage"]
    assert net.acls["dc2"].resolver.token(tok["SecretID"], 0)["Description"] == "x"


def test_no_replication_token_idles() -> None:
    net = setup(token="")
    net.clock.advance(5)
    assert net.rpc("dc2", "ACL.ReplicationStatus", {})["Running"] is False
    assert net.servers["dc2"].fsm.state.acl_policy_list(None)[1] == []


def test_expired_tokens_are_reaped_by_the_owning_leader() -> None:
    net = Net(task.Clock())
    net.add("dc1", "dc1", initial_management=MASTER, reap_interval=60.0)
    net.servers["dc1"].startService()
    net.clock.advance(1_700_000_000)
    tok = net.rpc("dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"ExpirationTTL": "1m"}})
    keep = net.rpc("dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"Description": "k"}})
    state = net.servers["dc1"].fsm.state
    net.clock.advance(60)  # reaped on the first round past its expiry
    net.clock.advance(60)
    assert state.acl_token_get(None, tok["AccessorID"])[1] is None
    assert state.acl_token_get(None, keep["AccessorID"])[1] is not None
