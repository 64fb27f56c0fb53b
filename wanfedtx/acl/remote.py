# -*- test-case-name: tests.unit.acl.test_acl_remote -*-
"""A secondary's resolver: the replicated copy first, then the primary, with caches and
``down_policy``.

A secret found in the local (replicated) store resolves there. Otherwise the primary is asked,
as Consul's resolver does, in two steps with two caches: the token (``ACL.TokenRead`` by
secret) is cached by secret for ``token_ttl`` (a not-found answer too, so a stream of unknown
tokens costs the primary one lookup each per TTL), and its policies (``ACL.PolicyResolve``, with
the presented token, only for the IDs not freshly cached) are cached by policy ID for
``policy_ttl``. Tokens sharing a policy share its cache entry, and a policy edit in the primary
reaches a secondary within ``policy_ttl`` even while the token entry is fresh. Concurrent
lookups of one secret are merged into one.

When the primary cannot be reached (anything but an ACL answer): ``extend-cache`` and
``async-cache`` use expired cache entries when the token and all of its policies are still
held (``async-cache`` answers from them at once and refreshes in the background), else the root
authorizer of ``default_policy``; ``allow`` allows everything but ACL management; ``deny``
denies everything. The caches hold at most ``CACHE_SIZE`` secrets and ``POLICY_CACHE_SIZE``
policies.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wanfedtx.acl.authorizer import Authorizer, allow_all, build, deny_all
from wanfedtx.acl.model import ACLError, ACLNotFoundError
from wanfedtx.acl.resolver import LocalResolver
from wanfedtx.acl.rules import Rules, parse_rules

log = Logger(namespace="agent.server.acl")

CACHE_SIZE = 1024
POLICY_CACHE_SIZE = 128
AUTHZ_CACHE_SIZE = 256
Remote = Callable[[str, dict[str, Any]], Deferred[Any]]


@attrs.define
class _Identity:
    policy_ids: tuple[str, ...] | None  # None: the primary said "ACL not found"
    expires: float


@attrs.define
class _Policy:
    key: tuple[str, int]  # (ID, ModifyIndex)
    rules: Rules | None  # None: the policy does not apply in this datacenter
    expires: float


class _Down(Exception):
    """The primary could not be reached (the cause is the first argument)."""


def _is_acl_answer(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, ACLError) or "ACL not found" in text or "Permission denied" in text


class RemoteResolver:
    """``LocalResolver`` plus the primary (see the module docstring)."""

    def __init__(
        self,
        local: LocalResolver,
        remote: Remote,
        down_policy: str = "extend-cache",
        token_ttl: float = 30.0,
        policy_ttl: float = 30.0,
    ) -> None:
        self.local = local
        self.remote = remote
        self.down_policy = down_policy
        self.token_ttl = token_ttl
        self.policy_ttl = policy_ttl
        self._cache: OrderedDict[str, _Identity] = OrderedDict()
        self._policies: OrderedDict[str, _Policy] = OrderedDict()
        self._authorizers: OrderedDict[tuple[tuple[str, int], ...], Authorizer] = OrderedDict()
        self._inflight: dict[str, Deferred[Authorizer]] = {}

    @property
    def enabled(self) -> bool:
        return self.local.enabled

    @property
    def datacenter(self) -> str:
        return self.local.datacenter

    @property
    def state(self) -> Any:
        return self.local.state

    @property
    def key_list_policy(self) -> bool:
        return self.local.key_list_policy

    def authorizer(self, secret: str, now: float) -> Authorizer:
        return self.local.authorizer(secret, now)

    def authorize(self, secret: str, now: float) -> Authorizer | Deferred[Authorizer]:
        """The authorizer now when the store or fresh cache entries know it, else a Deferred."""
        try:
            return self.local.authorizer(secret, now)
        except ACLNotFoundError:
            pass
        ident = self._cache.get(secret)
        if ident is not None and ident.policy_ids is None and ident.expires > now:
            raise ACLNotFoundError()
        if ident is not None and ident.policy_ids is not None:
            fresh = ident.expires > now and all(
                (p := self._policies.get(i)) is not None and p.expires > now
                for i in ident.policy_ids
            )
            if fresh:
                return self._build(ident.policy_ids)
            if self.down_policy == "async-cache" and self._held(ident.policy_ids):
                self._fetch(secret, now)  # refresh in the background, answer stale now
                return self._build(ident.policy_ids)
        elif ident is not None and self.down_policy == "async-cache":
            self._fetch(secret, now)
            raise ACLNotFoundError()
        return self._fetch(secret, now)

    def _held(self, ids: tuple[str, ...]) -> bool:
        return all(i in self._policies for i in ids)

    def _build(self, ids: tuple[str, ...]) -> Authorizer:
        """The authorizer of the cached policies ``ids`` (compiled once per set of versions)."""
        entries = [self._policies[i] for i in ids if i in self._policies]
        chain = tuple(e.key for e in entries if e.rules is not None)
        cached = self._authorizers.get(chain)
        if cached is not None:
            self._authorizers.move_to_end(chain)
            return cached
        authz = build([e.rules for e in entries if e.rules is not None], self.local.default_policy)
        self._authorizers[chain] = authz
        while len(self._authorizers) > AUTHZ_CACHE_SIZE:
            self._authorizers.popitem(last=False)
        return authz

    def _fetch(self, secret: str, now: float) -> Deferred[Authorizer]:
        running = self._inflight.get(secret)
        if running is None:
            running = Deferred.fromCoroutine(self._ask(secret, now))
            self._inflight[secret] = running
            running.addBoth(self._done, secret)
        mine: Deferred[Authorizer] = Deferred()
        running.addCallbacks(mine.callback, lambda f: self._down(f, secret, mine))
        return mine

    def _done(self, result: Any, secret: str) -> Any:
        self._inflight.pop(secret, None)
        return result

    def _down(self, failure: Any, secret: str, out: Deferred[Authorizer]) -> None:
        exc = failure.value
        if not isinstance(exc, _Down):
            out.errback(failure)
            return None
        log.warn("acl: Error communicating with the ACL Datacenter: {error}", error=str(exc))
        ident = self._cache.get(secret)
        if self.down_policy == "allow":
            out.callback(allow_all())
        elif self.down_policy == "deny":
            out.callback(deny_all())
        elif ident is not None and ident.policy_ids is None:
            out.errback(ACLNotFoundError())
        elif ident is not None and ident.policy_ids is not None and self._held(ident.policy_ids):
            out.callback(self._build(ident.policy_ids))  # expired entries, extended
        else:
            out.callback(build([], self.local.default_policy))
        return None

    async def _call(self, method: str, args: dict[str, Any]) -> Any:
        try:
            return await self.remote(method, args)
        except Exception as exc:
            if _is_acl_answer(exc):
                raise
            raise _Down(str(exc)) from exc

    async def _ask(self, secret: str, now: float) -> Authorizer:
        ident = self._cache.get(secret)
        if ident is None or ident.expires <= now or ident.policy_ids is None:
            ident = await self._ask_token(secret, now)
        if ident.policy_ids is None:
            raise ACLNotFoundError()
        missing = [
            i for i in ident.policy_ids if (p := self._policies.get(i)) is None or p.expires <= now
        ]
        if missing:
            resolved = await self._call(
                "ACL.PolicyResolve", {"PolicyIDs": missing, "Token": secret}
            )
            got = resolved.get("Policies") if isinstance(resolved, dict) else None
            for policy in got or []:
                if isinstance(policy, dict):
                    self._store_policy(policy, now)
            for pid in missing:  # deleted since: remembered as "no rules" for policy_ttl
                entry = self._policies.get(pid)
                if entry is None or entry.expires <= now:
                    self._policies[pid] = _Policy((pid, -1), None, now + self.policy_ttl)
        return self._build(ident.policy_ids)

    async def _ask_token(self, secret: str, now: float) -> _Identity:
        try:
            reply = await self._call(
                "ACL.TokenRead", {"TokenID": secret, "TokenIDType": "secret", "Token": secret}
            )
        except _Down:
            raise
        except Exception as exc:
            if "ACL not found" in str(exc):
                self._store(secret, _Identity(None, now + self.token_ttl))
                raise ACLNotFoundError() from None  # as Consul: the bare error, no RPC prefix
            raise
        token = reply.get("Token") if isinstance(reply, dict) else None
        if not isinstance(token, dict):
            self._store(secret, _Identity(None, now + self.token_ttl))
            raise ACLNotFoundError()
        ids = tuple(
            str(link.get("ID"))
            for link in token.get("Policies") or []
            if isinstance(link, dict) and link.get("ID")
        )
        ident = _Identity(ids, now + self.token_ttl)
        self._store(secret, ident)
        return ident

    def _store(self, secret: str, entry: _Identity) -> None:
        self._cache[secret] = entry
        self._cache.move_to_end(secret)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _store_policy(self, policy: dict[str, Any], now: float) -> None:
        pid = str(policy.get("ID") or "")
        if not pid:
            return
        key = (pid, int(policy.get("ModifyIndex") or 0))
        old = self._policies.get(pid)
        rules: Rules | None
        if old is not None and old.key == key:
            rules = old.rules  # unchanged: keep the parsed rules
        else:
            dcs = policy.get("Datacenters") or []
            applies = not dcs or self.datacenter in dcs
            rules = parse_rules(str(policy.get("Rules") or "")) if applies else None
        self._policies[pid] = _Policy(key, rules, now + self.policy_ttl)
        self._policies.move_to_end(pid)
        while len(self._policies) > POLICY_CACHE_SIZE:
            self._policies.popitem(last=False)


def authorize(resolver: Any, secret: str, now: float) -> Authorizer | Deferred[Authorizer]:
    """``resolver.authorize`` when it has one (a secondary), else the local lookup."""
    method = getattr(resolver, "authorize", None)
    if method is not None:
        result: Authorizer | Deferred[Authorizer] = method(secret, now)
        return result
    local: Authorizer = resolver.authorizer(secret, now)
    return local
