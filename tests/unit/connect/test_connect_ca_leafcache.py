"""The agent's leaf cache against an in-process primary server (``task.Clock``): hits do not
sign again, entries per token, re-issue at the renewal point and after a root rotation,
blocking queries woken by a rotation or ended by their wait, one signing for concurrent
misses, a rate-limited re-issue keeps the cached leaf, refused names never reach a server."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_connect_ca_server import CID, result, server
from twisted.internet.defer import Deferred, fail

from wanfedtx.connect import ca
from wanfedtx.connect.endpoints import CSRRateLimitError
from wanfedtx.connect.errors import CAError, CSRError
from wanfedtx.connect.leafcache import NO_CA, LeafCache, LeafEntry, active_signing_key
from wanfedtx.metrics import Registry

HOUR = 3600.0


class CountingRPC:
    def __init__(self, cat: Any) -> None:
        self.cat = cat
        self.calls: list[str] = []
        self.hold_sign: list[Deferred[Any]] | None = None
        self.refuse_sign: Exception | None = None

    def __call__(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        self.calls.append(method)
        if method == "ConnectCA.Sign":
            if self.refuse_sign is not None:
                return fail(self.refuse_sign)
            self.cat.reactor.advance(1)  # a fresh CSRMaxPerSecond slot
            if self.hold_sign is not None:
                gate: Deferred[Any] = Deferred()
                self.hold_sign.append(gate)
                return gate.addCallback(lambda _: self.cat.rpc(method, args))
        return self.cat.rpc(method, args)


def cache() -> tuple[Any, LeafCache, CountingRPC]:
    cat, _ = server()
    rpc = CountingRPC(cat)
    return cat, LeafCache(rpc, cat.reactor, "dc1", rng=random.Random(5)), rpc


def get(c: LeafCache, service: str = "web", token: str = "", **kw: Any) -> tuple[LeafEntry, bool]:
    return result(Deferred.fromCoroutine(c.get(service, token, **kw)))  # type: ignore[no-any-return]


def rotate(cat: Any) -> None:
    key, root = ca.generate_root(CID, 99, ca.datetime.datetime.fromtimestamp(
        cat.reactor.seconds(), ca.datetime.UTC))
    result(cat.rpc("ConnectCA.ConfigurationSet", {"Config": {
        "Provider": "consul", "Config": {"PrivateKey": key, "RootCert": root}}}))


def test_hits_do_not_sign_again_and_tokens_have_their_own_entries() -> None:
    cat, _ = server()
    registry = Registry()
    c = LeafCache(CountingRPC(cat), cat.reactor, "dc1", metrics=registry)
    first, hit = get(c)
    assert not hit and c.issued == 1
    again, hit = get(c)
    assert hit and again.issued["CertPEM"] == first.issued["CertPEM"] and c.issued == 1
    assert again.issued["PrivateKeyPEM"] == first.issued["PrivateKeyPEM"]
    assert first.index == first.issued["ModifyIndex"]
    other, hit = get(c, token="t2")
    assert not hit and other.issued["CertPEM"] != first.issued["CertPEM"]
    roots = result(cat.rpc("ConnectCA.Roots", {}))
    assert first.authority_key_id == active_signing_key(roots)
    counter = registry.counter("cache.connect-ca-leaf.requests", "", ("result",))
    assert (counter.value(result="hit"), counter.value(result="miss")) == (1, 2)


def test_reissued_at_the_renewal_point() -> None:
    cat, c, _ = cache()
    first, _ = get(c)
    start = first.expires_at - 72 * HOUR
    assert start + 0.6 * 72 * HOUR <= first.renew_at <= start + 0.9 * 72 * HOUR
    cat.reactor.advance(first.renew_at - cat.reactor.seconds() - 1)
    assert get(c)[1] is True
    cat.reactor.advance(2)
    second, hit = get(c)
    assert not hit and second.index > first.index


def test_root_rotation_reissues_and_wakes_a_blocking_query() -> None:
    cat, c, _ = cache()
    first, _ = get(c)
    d = Deferred.fromCoroutine(c.get("web", "", min_index=first.index, wait=120))
    cat.reactor.advance(30)
    assert not d.called  # blocked
    rotate(cat)
    new, hit = result(d)
    assert not hit and new.index > first.index
    roots = result(cat.rpc("ConnectCA.Roots", {}))
    assert new.authority_key_id == active_signing_key(roots) != first.authority_key_id
    # a plain GET after a rotation is a miss too
    assert get(c)[0] is new


def test_blocking_query_ends_with_its_wait() -> None:
    cat, c, _ = cache()
    first, _ = get(c)
    d = Deferred.fromCoroutine(c.get("web", "", min_index=first.index, wait=60))
    cat.reactor.advance(59)
    assert not d.called
    cat.reactor.advance(60 / 16 + 1)  # the servers add up to wait/16 of jitter
    entry, hit = result(d)
    assert entry is first and hit
    # an older index answers at once
    assert get(c, min_index=first.index - 1, wait=60)[0] is first


def test_concurrent_misses_share_one_signing() -> None:
    _, c, rpc = cache()
    rpc.hold_sign = []
    ds = [Deferred.fromCoroutine(c.get("web", "", 0, 0.0)) for _ in range(5)]
    assert len(rpc.hold_sign) == 1
    rpc.hold_sign[0].callback(None)
    entries = {id(result(d)[0]) for d in ds}
    assert len(entries) == 1 and c.issued == 1


def test_failed_reissue_keeps_the_cached_leaf_but_a_first_fetch_fails() -> None:
    cat, c, rpc = cache()
    rpc.refuse_sign = CSRRateLimitError()
    with pytest.raises(CSRRateLimitError):
        get(c)
    rpc.refuse_sign = None
    first, _ = get(c)
    cat.reactor.advance(first.renew_at - cat.reactor.seconds() + 1)
    rpc.refuse_sign = CSRRateLimitError()
    kept, _ = get(c)
    assert kept is first
    # held 1-30 s before the next attempt: no Sign call meanwhile
    signs = rpc.calls.count("ConnectCA.Sign")
    assert first.hold_until - cat.reactor.seconds() >= 1
    assert get(c) == (first, True)
    assert rpc.calls.count("ConnectCA.Sign") == signs
    # a blocking query waits for the hold, then the next attempt succeeds
    rpc.refuse_sign = None
    d = Deferred.fromCoroutine(c.get("web", "", min_index=first.index, wait=120))
    assert not d.called
    cat.reactor.advance(30 + 30 / 16 + 1)  # the hold, the servers' jitter
    new, hit = result(d)
    assert not hit and new.index > first.index


def test_no_ca_yet() -> None:
    cat, _ = server(dc="dc2", primary="dc1")  # the primary is unreachable: no roots
    c = LeafCache(cat.rpc, cat.reactor, "dc2")
    with pytest.raises(CAError, match=f"^{NO_CA}$"):
        get(c)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=40).filter(
    lambda s: not s or any(not (ch.isascii() and (ch.isalnum() or ch in "_.-")) for ch in s)))
def test_invalid_service_names_never_reach_a_server(name: str) -> None:
    calls: list[str] = []

    def rpc(method: str, args: dict[str, Any]) -> Deferred[Any]:
        calls.append(method)
        raise AssertionError("no RPC expected")

    from twisted.internet import task

    c = LeafCache(rpc, task.Clock(), "dc1")
    with pytest.raises(CSRError, match="Invalid service"):
        result(Deferred.fromCoroutine(c.get(name, "")))
    assert calls == []


def test_entries_are_bounded() -> None:
    cat, _ = server()
    c = LeafCache(CountingRPC(cat), cat.reactor, "dc1", max_entries=3)
    for i in range(5):
        get(c, service=f"s{i}")
    assert [k[0] for k in c.entries] == ["s2", "s3", "s4"]
