"""Authorizer precedence: Consul's documented examples as tables, and hypothesis against a
brute-force evaluation written from the documentation (no merging, no prefix walk)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wanfedtx.acl.authorizer import build
from wanfedtx.acl.rules import RANK, Rule, Rules, RulesError, parse_rules

KEYS = """
key_prefix "" { policy = "read" }
key_prefix "foo/" { policy = "write" }
key_prefix "foo/bar/" { policy = "read" }
key "foo/bar/baz" { policy = "deny" }
"""
AGENTS = """
agent "foo" { policy = "write" }
agent "football" { policy = "deny" }
agent_prefix "foot" { policy = "read" }
agent_prefix "fo" { policy = "read" }
"""


def _authz(*texts: str, default: str = "deny"):  # type: ignore[no-untyped-def]
    return build([parse_rules(t) for t in texts], default)


def test_documented_key_example() -> None:
    a = _authz(KEYS)
    assert a.key_read("zip") and not a.key_write("zip")
    assert a.key_write("foo/x")
    assert a.key_read("foo/bar/x") and not a.key_write("foo/bar/x")
    assert not a.key_read("foo/bar/baz")
    assert not a.key_write_prefix("foo/")
    assert a.key_write_prefix("foo/zz")


@pytest.mark.parametrize("name", ["fo", "for", "foot", "foot2", "food"])
def test_prefer_exact_agent_read_only(name: str) -> None:
    a = _authz(AGENTS)
    assert a.agent_read(name) and not a.agent_write(name)


@pytest.mark.parametrize("kind", ["agent", "key", "node", "service", "session", "event", "query"])
def test_prefer_exact_same_pattern_for_every_resource(kind: str) -> None:
    a = _authz(AGENTS.replace("agent", kind))
    assert a.allowed(kind, "foo", "write") and a.allowed(kind, "foo", "read")
    assert not a.allowed(kind, "football", "read") and not a.allowed(kind, "football", "write")
    assert a.allowed(kind, "foot2", "read") and not a.allowed(kind, "foot2", "write")


def test_empty_policy_is_default_everywhere() -> None:
    deny = _authz("")
    assert not deny.key_read("a") and not deny.operator_read() and not deny.acl_read()
    allow = _authz("", default="allow")
    assert allow.key_write("a") and allow.operator_write() and allow.node_write("n")
    assert not allow.acl_read() and not allow.acl_write()
    manage = _authz("", default="manage")
    assert manage.acl_write()


def test_key_write_prefix_table() -> None:
    a = _authz('key_prefix "" { policy = "write" }\nkey "foo/bar" { policy = "deny" }')
    assert not a.key_write_prefix("foo/")
    assert a.key_write_prefix("baz/")
    assert not a.key_write("foo/bar")
    assert a.key_write("foo/baz")


def test_deny_wins_only_at_equal_specificity() -> None:
    assert not _authz(
        'service "web" { policy = "write" }', 'service "web" { policy = "deny" }'
    ).service_read("web")
    assert _authz(
        'key_prefix "app/" { policy = "read" }', 'key_prefix "app/" { policy = "write" }'
    ).key_write("app/x")
    two = _authz('key_prefix "" { policy = "write" }', 'key_prefix "foo/" { policy = "read" }')
    assert two.key_read("foo/x") and not two.key_write("foo/x")


def test_intentions_follow_service_policy() -> None:
    a = _authz('service "web" { policy = "read" }\nservice "db" { policy = "deny" }')
    assert a.allowed("intentions", "web", "read") and not a.allowed("intentions", "web", "write")
    assert not a.allowed("intentions", "db", "read")


def test_key_list() -> None:
    assert not _authz('key_prefix "" { policy = "read" }').key_list("a/")
    a = _authz('key_prefix "" { policy = "list" }')
    assert a.key_list("a/") and a.key_read("a/b") and not a.key_write("a/b")


def test_operator_scalar() -> None:
    a = _authz('operator = "read"')
    assert a.operator_read() and not a.operator_write()
    assert not _authz('operator = "deny"', default="allow").operator_read()


# --- the brute-force reference -------------------------------------------------------------

ALPHABET = "ab/"
names = st.text(alphabet=ALPHABET, max_size=5)
levels = st.sampled_from(["read", "write", "deny", "list"])
rule = st.builds(
    Rule,
    resource=st.just("key"),
    prefix=st.booleans(),
    segment=names,
    policy=levels,
)
policies = st.lists(st.builds(lambda rs: Rules(tuple(rs)), st.lists(rule, max_size=6)), max_size=3)


def _reference(pols: list[Rules], name: str, required: str, default: str) -> bool:
    """Read the documentation literally: the exact rules naming ``name`` if any, else the
    longest prefix rules covering it; among the chosen rules the strongest level (deny > write
    > list > read); no rule: default_policy."""
    every = [r for p in pols for r in p.rules]
    chosen = [r for r in every if not r.prefix and r.segment == name]
    if not chosen:
        covering = [r for r in every if r.prefix and name.startswith(r.segment)]
        if covering:
            longest = max(len(r.segment) for r in covering)
            chosen = [r for r in covering if len(r.segment) == longest]
    if not chosen:
        return default == "allow"
    level = max((r.policy for r in chosen), key=lambda lv: RANK[lv])
    return {
        "deny": False,
        "write": True,
        "list": required in ("list", "read"),
        "read": required == "read",
    }[level]


@settings(max_examples=400, deadline=None)
@given(
    policies, names, st.sampled_from(["read", "list", "write"]), st.sampled_from(["allow", "deny"])
)
def test_authorizer_equals_brute_force_reference(
    pols: list[Rules], name: str, required: str, default: str
) -> None:
    assert build(pols, default).allowed("key", name, required) == _reference(
        pols, name, required, default
    )


def _reference_write_prefix(pols: list[Rules], prefix: str, default: str) -> bool:
    every = [r for p in pols for r in p.rules]
    below = [r for r in every if r.segment.startswith(prefix)]
    merged: dict[tuple[bool, str], str] = {}
    for r in below:
        old = merged.get((r.prefix, r.segment))
        merged[(r.prefix, r.segment)] = (
            r.policy if old is None or RANK[r.policy] > RANK[old] else old
        )
    if any(level != "write" for level in merged.values()):
        return False
    covering = [r for r in every if r.prefix and prefix.startswith(r.segment)]
    if covering:
        longest = max(len(r.segment) for r in covering)
        level = max(
            (r.policy for r in covering if len(r.segment) == longest), key=lambda lv: RANK[lv]
        )
        return level == "write"
    return default == "allow"


@settings(max_examples=300, deadline=None)
@given(policies, names, st.sampled_from(["allow", "deny"]))
def test_key_write_prefix_equals_reference(pols: list[Rules], prefix: str, default: str) -> None:
    assert build(pols, default).key_write_prefix(prefix) == _reference_write_prefix(
        pols, prefix, default
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_rules_error(text: str) -> None:
    try:
        parse_rules(text)
    except RulesError as e:
        assert "\n" not in str(e)
