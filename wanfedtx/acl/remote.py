# -*- test-case-name: tests.unit.acl.test_acl_remote -*-
"""A secondary's resolver: the replicated copy first, then the primary, with a cache and
``down_policy``.

A secret found in the local (replicated) store resolves there. Otherwise the primary is asked
(``ACL.TokenRead`` by secret, then ``ACL.PolicyResolve`` for the token's policies, both with the
presented token) and the answer, found or not, is cached for ``token_ttl``, so a stream of
unknown tokens costs the primary one lookup each per TTL. When the primary cannot be reached
(anything but an ACL answer): ``extend-cache`` and ``async-cache`` use an expired cache entry
if there is one (``async-cache`` answers from it at once and refreshes in the background),
else the root authorizer of ``default_policy``; ``allow`` allows everything but ACL management;
``deny`` denies everything. The cache holds at most ``CACHE_SIZE`` secrets.
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
from wanfedtx.acl.rules import parse_rules

log = Logger(namespace="agent.server.acl")

CACHE_SIZE = 1024
Remote = Callable[[str, dict[str, Any]], Deferred[Any]]


@attrs.define
class _Entry:
    authz: Authorizer | None  # None: the primary said "ACL not found"
    expires: float


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
    ) -> None:
        self.local = local
        self.remote = remote
        self.down_policy = down_policy
        self.token_ttl = token_ttl
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
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
        """The authorizer now when the store or a fresh cache entry knows it, else a Deferred."""
        try:
            return self.local.authorizer(secret, now)
        except ACLNotFoundError:
            pass
        entry = self._cache.get(secret)
        if entry is not None and entry.expires > now:
            return self._answer(entry)
        if entry is not None and self.down_policy == "async-cache":
            self._fetch(secret, now, entry)
            return self._answer(entry)
        return self._fetch(secret, now, entry)

    @staticmethod
    def _answer(entry: _Entry) -> Authorizer:
        if entry.authz is None:
            raise ACLNotFoundError()
        return entry.authz

    def _fetch(self, secret: str, now: float, stale: _Entry | None) -> Deferred[Authorizer]:
        running = self._inflight.get(secret)
        if running is None:
            running = Deferred.fromCoroutine(self._ask(secret, now))
            self._inflight[secret] = running
            running.addBoth(self._done, secret)
        mine: Deferred[Authorizer] = Deferred()
        running.addCallbacks(mine.callback, lambda f: self._down(f, stale, mine))
        return mine

    def _done(self, result: Any, secret: str) -> Any:
        self._inflight.pop(secret, None)
        return result

    def _down(self, failure: Any, stale: _Entry | None, out: Deferred[Authorizer]) -> None:
        exc = failure.value
        if _is_acl_answer(exc):
            out.errback(failure)
            return
        log.warn("acl: Error communicating with the ACL Datacenter: {error}", error=str(exc))
        if self.down_policy == "allow":
            out.callback(allow_all())
        elif self.down_policy == "deny":
            out.callback(deny_all())
        elif stale is not None:
            try:
                out.callback(self._answer(stale))
            except ACLNotFoundError as e:
                out.errback(e)
        else:
            out.callback(build([], self.local.default_policy))
        return None

    async def _ask(self, secret: str, now: float) -> Authorizer:
        try:
            reply = await self.remote(
                "ACL.TokenRead", {"TokenID": secret, "TokenIDType": "secret", "Token": secret}
            )
        except Exception as exc:
            if "ACL not found" in str(exc):
                self._store(secret, _Entry(None, now + self.token_ttl))
                raise ACLNotFoundError() from None  # as Consul: the bare error, no RPC prefix
            raise
        token = reply.get("Token") if isinstance(reply, dict) else None
        if not isinstance(token, dict):
            self._store(secret, _Entry(None, now + self.token_ttl))
            raise ACLNotFoundError()
        ids = [str(link.get("ID")) for link in token.get("Policies") or []]
        policies: list[Any] = []
        if ids:
            resolved = await self.remote("ACL.PolicyResolve", {"PolicyIDs": ids, "Token": secret})
            policies = list(resolved.get("Policies") or [])
        rules = []
        for p in policies:
            dcs = p.get("Datacenters") or []
            if dcs and self.datacenter not in dcs:
                continue
            rules.append(parse_rules(str(p.get("Rules") or "")))
        authz = build(rules, self.local.default_policy)
        self._store(secret, _Entry(authz, now + self.token_ttl))
        return authz

    def _store(self, secret: str, entry: _Entry) -> None:
        self._cache[secret] = entry
        self._cache.move_to_end(secret)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


def authorize(resolver: Any, secret: str, now: float) -> Authorizer | Deferred[Authorizer]:
    """``resolver.authorize`` when it has one (a secondary), else the local lookup."""
    method = getattr(resolver, "authorize", None)
    if method is not None:
        result: Authorizer | Deferred[Authorizer] = method(secret, now)
        return result
    local: Authorizer = resolver.authorizer(secret, now)
    return local
