"""A secondary's remote lookups keep two caches, as Consul's resolver does: tokens by secret for
``token_ttl`` and policies by ID for ``policy_ttl``."""

from __future__ import annotations

import pytest
from acl_support import MASTER, Net
from twisted.internet import task

from wanfedtx.acl.model import PermissionDeniedError


def setup(token_ttl: float, policy_ttl: float, down_policy: str = "extend-cache") -> Net:
    net = Net(task.Clock())
    net.add("dc1", "dc1", initial_management=MASTER)
    net.servers["dc1"].startService()
    net.add("dc2", "dc1", down_policy=down_policy, token_ttl=token_ttl, policy_ttl=policy_ttl)
    net.servers["dc2"].startService()
    net.rpc(
        "dc1",
        "ACL.PolicySet",
        {
            "Token": MASTER,
            "Policy": {"Name": "kv", "Rules": 'key_prefix "app/" { policy = "write" }'},
        },
    )
    return net


def token(net: Net) -> str:
    tok = net.rpc(
        "dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"Policies": [{"Name": "kv"}]}}
    )
    return str(tok["SecretID"])


def put(net: Net, secret: str, key: str = "app/x") -> object:
    return net.rpc(
        "dc2",
        "KVS.Apply",
        {"Datacenter": "dc2", "Op": "set", "DirEnt": {"Key": key, "Value": b"v"}, "Token": secret},
    )


def count(net: Net, method: str) -> int:
    return sum(1 for dc, m in net.calls if (dc, m) == ("dc1", method))


def test_tokens_sharing_a_policy_share_its_cache_entry() -> None:
    net = setup(token_ttl=30, policy_ttl=30)
    a, b = token(net), token(net)
    net.calls.clear()
    assert put(net, a) is True
    assert put(net, b) is True
    assert count(net, "ACL.TokenRead") == 2
    assert count(net, "ACL.PolicyResolve") == 1  # b's policy came from the policy cache


def test_policy_edit_reaches_the_secondary_after_policy_ttl_while_the_token_is_cached() -> None:
    net = setup(token_ttl=600, policy_ttl=10)
    secret = token(net)
    assert put(net, secret) is True
    _, pol = net.servers["dc1"].fsm.state.acl_policy_get_by_name(None, "kv")
    net.rpc(
        "dc1",
        "ACL.PolicySet",
        {
            "Token": MASTER,
            "Policy": {
                "ID": pol["ID"],
                "Name": "kv",
                "Rules": 'key_prefix "app/" { policy = "read" }',
            },
        },
    )
    assert put(net, secret) is True  # policy still cached
    net.clock.advance(11)
    net.calls.clear()
    with pytest.raises(PermissionDeniedError):
        put(net, secret)
    assert count(net, "ACL.TokenRead") == 0  # the token entry was still fresh
    assert count(net, "ACL.PolicyResolve") == 1


def test_token_ttl_expiry_asks_for_the_token_but_not_a_fresh_policy() -> None:
    net = setup(token_ttl=10, policy_ttl=600)
    secret = token(net)
    put(net, secret)
    net.clock.advance(11)
    net.calls.clear()
    assert put(net, secret) is True
    assert count(net, "ACL.TokenRead") == 1
    assert count(net, "ACL.PolicyResolve") == 0


def test_extend_cache_uses_an_expired_policy_when_the_primary_is_down() -> None:
    net = setup(token_ttl=600, policy_ttl=10)
    secret = token(net)
    put(net, secret)
    net.down.add("dc1")
    net.clock.advance(30)
    assert put(net, secret) is True
    with pytest.raises(PermissionDeniedError):
        put(net, secret, key="other/x")
