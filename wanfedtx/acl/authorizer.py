# -*- test-case-name: tests.unit.acl.test_acl_authorizer -*-
"""Authorizers: a token's merged policies compiled for lookups, chained to a default policy.

``PolicyAuthorizer`` answers ``ALLOW``, ``DENY`` or ``DEFAULT`` (no rule matched). Within one
authorizer an exact rule on the segment wins, else the longest prefix rule, else ``DEFAULT``.
Several policies merge first, per segment and kind (exact and prefix kept apart), the stronger
level winning (deny > write > list > read), so "deny wins" only at equal specificity.
``Authorizer`` is the chain the endpoints use: the policy authorizer, then the root authorizer
of ``default_policy`` (``allow`` still refuses ACL management; ``deny`` refuses everything;
``manage`` allows everything). Every check returns a bool: allowed or not.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from wanfedtx.acl.rules import DENY, LIST, READ, WRITE, Rules, stronger

ALLOW, DEFAULT = "allow", "default"
DENIED = "deny"


def enforce(level: str, required: str) -> str:
    """Consul's ``enforce``: a rule's level against the access a check needs."""
    if not level:
        return DEFAULT
    if level == WRITE:
        return ALLOW
    if level == DENY:
        return DENIED
    if level == LIST:
        return ALLOW if required in (LIST, READ) else DENIED
    return ALLOW if required == READ else DENIED


@attrs.define
class _Tree:
    """Exact and prefix rules of one resource kind (policy or intentions)."""

    exact: dict[str, str] = attrs.field(factory=dict)
    prefix: dict[str, str] = attrs.field(factory=dict)

    def add(self, is_prefix: bool, segment: str, level: str) -> None:
        table = self.prefix if is_prefix else self.exact
        table[segment] = stronger(table.get(segment, ""), level)

    def lookup(self, name: str) -> str:
        """The level of the exact rule, else the longest prefix rule, else ""."""
        level = self.exact.get(name)
        if level:
            return level
        if self.prefix:
            for end in range(len(name), -1, -1):
                level = self.prefix.get(name[:end])
                if level:
                    return level
        return ""

    def write_prefix(self, prefix: str) -> str:
        """Consul's ``KeyWritePrefix``: everything at or below ``prefix`` must be writable."""
        for table in (self.exact, self.prefix):
            for segment, level in table.items():
                if segment.startswith(prefix) and level != WRITE:
                    return DENIED
        covering = ""
        for end in range(len(prefix), -1, -1):
            covering = self.prefix.get(prefix[:end], "")
            if covering:
                break
        if covering and covering != WRITE:
            return DENIED
        return ALLOW if covering == WRITE else DEFAULT


class PolicyAuthorizer:
    """The merged rules of a set of policies, answering ALLOW, DENY or DEFAULT."""

    def __init__(self, policies: Iterable[Rules]) -> None:
        self._trees: dict[str, _Tree] = {}
        self._intentions = _Tree()
        raw_intentions = _Tree()
        scalars = {"acl": "", "keyring": "", "operator": ""}
        for rules in policies:
            for rule in rules.rules:
                self._trees.setdefault(rule.resource, _Tree()).add(
                    rule.prefix, rule.segment, rule.policy
                )
                if rule.resource == "service":
                    raw_intentions.add(rule.prefix, rule.segment, rule.intentions)
            for name in scalars:
                scalars[name] = stronger(scalars[name], getattr(rules, name))
        self._scalars = scalars
        services = self._trees.get("service", _Tree())
        for is_prefix, table in ((False, services.exact), (True, services.prefix)):
            raw = raw_intentions.prefix if is_prefix else raw_intentions.exact
            for segment, policy in table.items():
                level = raw.get(segment, "") or (DENY if policy == DENY else READ)
                self._intentions.add(is_prefix, segment, level)

    def check(self, resource: str, name: str, required: str) -> str:
        """ALLOW, DENY or DEFAULT for ``required`` access to ``name`` of ``resource``."""
        if resource in self._scalars:
            return enforce(self._scalars[resource], required)
        if resource == "intentions":
            return enforce(self._intentions.lookup(name), required)
        tree = self._trees.get(resource)
        return enforce(tree.lookup(name), required) if tree is not None else DEFAULT

    def key_write_prefix(self, prefix: str) -> str:
        tree = self._trees.get("key")
        return tree.write_prefix(prefix) if tree is not None else DEFAULT


@attrs.frozen
class Authorizer:
    """A chain: the policy authorizer (if any), then the root policy (allow, deny or manage)."""

    policy: PolicyAuthorizer | None
    default: str  # "allow", "deny" or "manage"

    def _root(self, resource: str) -> bool:
        if self.default == "manage":
            return True
        if self.default == "allow":
            return resource != "acl"
        return False

    def _decide(self, decision: str, resource: str) -> bool:
        if decision == ALLOW:
            return True
        if decision == DENIED:
            return False
        return self._root(resource)

    def allowed(self, resource: str, name: str, required: str) -> bool:
        decision = self.policy.check(resource, name, required) if self.policy else DEFAULT
        return self._decide(decision, resource)

    # Consul's Authorizer method names, for the endpoints
    def acl_read(self) -> bool:
        return self.allowed("acl", "", READ)

    def acl_write(self) -> bool:
        return self.allowed("acl", "", WRITE)

    def operator_read(self) -> bool:
        return self.allowed("operator", "", READ)

    def operator_write(self) -> bool:
        return self.allowed("operator", "", WRITE)

    def key_read(self, key: str) -> bool:
        return self.allowed("key", key, READ)

    def key_list(self, key: str) -> bool:
        return self.allowed("key", key, LIST)

    def key_write(self, key: str) -> bool:
        return self.allowed("key", key, WRITE)

    def key_write_prefix(self, prefix: str) -> bool:
        decision = self.policy.key_write_prefix(prefix) if self.policy else DEFAULT
        return self._decide(decision, "key")

    def node_read(self, node: str) -> bool:
        return self.allowed("node", node, READ)

    def node_write(self, node: str) -> bool:
        return self.allowed("node", node, WRITE)

    def service_read(self, service: str) -> bool:
        return self.allowed("service", service, READ)

    def service_write(self, service: str) -> bool:
        return self.allowed("service", service, WRITE)

    def agent_read(self, node: str) -> bool:
        return self.allowed("agent", node, READ)

    def agent_write(self, node: str) -> bool:
        return self.allowed("agent", node, WRITE)


def allow_all() -> Authorizer:
    return Authorizer(None, "allow")


def deny_all() -> Authorizer:
    return Authorizer(None, "deny")


def manage_all() -> Authorizer:
    return Authorizer(None, "manage")


def build(policies: Iterable[Rules], default_policy: str) -> Authorizer:
    """The chain for a token whose policies (already filtered by datacenter) are ``policies``."""
    return Authorizer(PolicyAuthorizer(policies), default_policy)
