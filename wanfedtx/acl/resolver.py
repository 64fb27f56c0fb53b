# -*- test-case-name: tests.unit.acl.test_acl_model -*-
"""Token secret -> ``Authorizer`` from a server's own state store.

``""`` means the anonymous token; ``allow``/``deny``/``manage`` are refused with
``Cannot resolve root ACL``; an unknown or expired secret is ``ACL not found``. A token's
policies are dropped in datacenters their ``Datacenters`` do not list. Parsed rules and compiled
authorizers are cached by (policy ID, ModifyIndex), so a policy edit takes effect at its next
use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wanfedtx.acl.authorizer import Authorizer, allow_all, build
from wanfedtx.acl.model import ANONYMOUS_SECRET, ROOT_NAMES, ACLError, ACLNotFoundError
from wanfedtx.acl.rules import Rules, parse_rules
from wanfedtx.state import StateStore


def _expired(token: dict[str, Any], now: float) -> bool:
    exp = token.get("ExpirationTime")
    if not exp:
        return False
    try:
        when = datetime.fromisoformat(str(exp).replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() <= now


class LocalResolver:
    """Resolves secrets against ``state`` for one datacenter."""

    def __init__(
        self,
        state: StateStore,
        datacenter: str,
        default_policy: str,
        enabled: bool = True,
        key_list_policy: bool = False,
    ) -> None:
        self.state = state
        #: ``acl.enable_key_list_policy``: recursive KV reads need ``list`` on the prefix
        self.key_list_policy = key_list_policy
        self.datacenter = datacenter
        self.default_policy = default_policy
        self.enabled = enabled
        self._rules: dict[tuple[str, int], Rules] = {}
        self._authorizers: dict[tuple[tuple[str, int], ...], Authorizer] = {}

    def token(self, secret: str, now: float) -> dict[str, Any]:
        """The token row for ``secret``; ``ACLNotFoundError`` / root refusal as Consul."""
        if not isinstance(secret, str):
            raise ACLNotFoundError()
        if secret in ROOT_NAMES:
            raise ACLError("Cannot resolve root ACL")
        _, row = self.state.acl_token_get_by_secret(None, secret or ANONYMOUS_SECRET)
        if row is None or _expired(row, now):
            raise ACLNotFoundError()
        return row

    def authorizer(self, secret: str, now: float) -> Authorizer:
        """The chain for ``secret`` (allow-all when ACLs are off)."""
        if not self.enabled:
            return allow_all()
        token = self.token(secret, now)
        policies = []
        for link in token.get("Policies") or []:
            _, policy = self.state.acl_policy_get(None, str(link.get("ID", "")))
            if policy is None:
                continue
            dcs = policy.get("Datacenters") or []
            if dcs and self.datacenter not in dcs:
                continue
            policies.append(policy)
        # compiled once per set of (policy ID, ModifyIndex): an edit takes effect at next use
        chain = tuple((str(p["ID"]), int(p.get("ModifyIndex", 0))) for p in policies)
        cached = self._authorizers.get(chain)
        if cached is not None:
            return cached
        rules: list[Rules] = []
        for policy in policies:
            key = (str(policy["ID"]), int(policy.get("ModifyIndex", 0)))
            parsed = self._rules.get(key)
            if parsed is None:
                parsed = parse_rules(str(policy.get("Rules") or ""))
                if len(self._rules) > 1024:
                    self._rules.clear()
                self._rules[key] = parsed
            rules.append(parsed)
        authz = build(rules, self.default_policy)
        if len(self._authorizers) > 256:
            self._authorizers.clear()
        self._authorizers[chain] = authz
        return authz
