"""A secondary resolving tokens it has not replicated: asks the primary, caches for token_ttl
(not-found answers too), and applies down_policy when the primary cannot be reached."""

from __future__ import annotations

import pytest
from acl_support import MASTER, Net
from twisted.internet import task

from wanfedtx.acl.model import ACLError, PermissionDeniedError

UNKNOWN = "11111111-2222-4333-8444-555555555555"


def setup(down_policy: str = "extend-cache") -> tuple[Net, str]:
    net = Net(task.Clock())
    net.add("dc1", "dc1", initial_management=MASTER)
    net.servers["dc1"].startService()
    # no replication token: dc2 holds no ACL data and must ask the primary
    net.add("dc2", "dc1", down_policy=down_policy, token_ttl=30.0)
    net.servers["dc2"].startService()
    net.rpc(
        "dc1",
        "ACL.PolicySet",
        {
            "Token": MASTER,
            "Policy": {"Name": "kv", "Rules": 'key_prefix "app/" { policy = "write" }'},
        },
    )
    tok = net.rpc(
        "dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"Policies": [{"Name": "kv"}]}}
    )
    return net, tok["SecretID"]


def put(net: Net, token: str, key: str = "app/x") -> object:
    return net.rpc(
        "dc2",
        "KVS.Apply",
        {"Datacenter": "dc2", "Op": "set", "DirEnt": {"Key": key, "Value": b"v"}, "Token": token},
    )


def lookups(net: Net) -> int:
    return sum(1 for dc, m in net.calls if (dc, m) == ("dc1", "ACL.TokenRead"))


def test_unknown_token_is_resolved_at_the_primary_and_cached() -> None:
    net, secret = setup()
    assert put(net, secret) is True
    with pytest.raises(PermissionDeniedError):
        put(net, secret, key="other")
    assert lookups(net) == 1  # the second request used the cache
    assert ("dc1", "ACL.PolicyResolve") in net.calls
    net.clock.advance(31)
    net.calls.clear()  # (the agent's own anti-entropy resolves the anonymous token meanwhile)
    put(net, secret)
    assert lookups(net) == 1  # expired: asked again


def test_not_found_is_cached_too() -> None:
    net, _ = setup()
    for _ in range(5):
        with pytest.raises(ACLError, match="ACL not found"):
            put(net, UNKNOWN)
    assert lookups(net) == 1


def test_policy_resolve_refuses_other_policies() -> None:
    net, secret = setup()
    with pytest.raises(PermissionDeniedError):
        net.rpc(
            "dc1",
            "ACL.PolicyResolve",
            {"Token": secret, "PolicyIDs": ["00000000-0000-0000-0000-000000000001"]},
        )


def test_extend_cache_keeps_a_cached_token_and_denies_an_unknown_one() -> None:
    net, secret = setup("extend-cache")
    put(net, secret)
    net.down.add("dc1")
    net.clock.advance(120)
    assert put(net, secret) is True  # past its TTL, still cached
    with pytest.raises(PermissionDeniedError):
        put(net, UNKNOWN)  # unknown: default_policy (deny)


@pytest.mark.parametrize(("policy", "allowed"), [("allow", True), ("deny", False)])
def test_allow_and_deny_down_policies(policy: str, allowed: bool) -> None:
    net, secret = setup(policy)
    net.down.add("dc1")
    if allowed:
        assert put(net, UNKNOWN, key="anything") is True
    else:
        with pytest.raises(PermissionDeniedError):
            put(net, secret)


def test_async_cache_answers_stale_and_refreshes() -> None:
    net, secret = setup("async-cache")
    put(net, secret)
    net.clock.advance(31)
    net.calls.clear()
    assert put(net, secret) is True
    assert lookups(net) == 1  # refreshed in the background
