"""What ACLs add to one request: token resolution + authorizer + one KV check, in-process.

Builds a state store with the builtin policies, one policy of ``--rules`` key_prefix rules and a
token linking it, then times ``LocalResolver.authorizer(secret).key_read(key)`` (what the RPC
guard does per request, cache warm) and the same through the guard around a KVS.Get handler
that returns at once. Prints µs per call.

Usage: python bench/acl/bench_authz.py [--rules 5] [--calls 200000]
"""

from __future__ import annotations

import argparse
import time

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from wanfedtx.acl import model
from wanfedtx.acl.enforce import guard
from wanfedtx.acl.resolver import LocalResolver
from wanfedtx.state import StateStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200_000)
    a = parser.parse_args()
    state = StateStore()
    rules = "\n".join(f'key_prefix "app{i}/" {{ policy = "write" }}' for i in range(a.rules))
    policy = {"ID": model.new_uuid(), "Name": "kv", "Description": "", "Rules": rules,
              "Datacenters": []}
    policy["Hash"] = model.policy_hash(policy)
    state.acl_policy_batch_set(1, [policy, model.global_management_policy()])
    secret = model.new_uuid()
    state.acl_token_batch_set(2, [model.make_token(model.new_uuid(), secret, "", [policy["ID"]],
                                                   "2026-01-01T00:00:00Z")])
    resolver = LocalResolver(state, "dc1", "deny")
    key = f"app{a.rules - 1}/config"
    assert resolver.authorizer(secret, 0).key_read(key)

    start = time.perf_counter()
    for _ in range(a.calls):
        resolver.authorizer(secret, 0).key_read(key)
    per_check = (time.perf_counter() - start) / a.calls * 1e6

    handler = guard("KVS.Get", lambda args: succeed({"Entries": None}), resolver=resolver,
                    clock=Clock())
    bare = lambda args: succeed({"Entries": None})  # noqa: E731
    args = {"Key": key, "Token": secret, "Datacenter": "dc1"}
    timings = {}
    for name, fn in (("bare handler", bare), ("guarded handler", handler)):
        start = time.perf_counter()
        for _ in range(a.calls):
            fn(args)
        timings[name] = (time.perf_counter() - start) / a.calls * 1e6
    print(f"rules={a.rules} calls={a.calls}")
    print(f"resolve + key_read:  {per_check:.2f} us")
    for name, us in timings.items():
        print(f"{name + ':':20} {us:.2f} us")
    print(f"added by the guard:  {timings['guarded handler'] - timings['bare handler']:.2f} us")


if __name__ == "__main__":
    main()
