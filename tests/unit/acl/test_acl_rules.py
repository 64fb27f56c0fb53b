"""The rules parser: Consul's documented examples, HCL == JSON, Consul's error messages."""

from __future__ import annotations

import pytest

from wanfedtx.acl.rules import Rule, Rules, RulesError, parse_rules

HCL = """
key_prefix "" { policy = "read" }
key_prefix "foo/" { policy = "write" }
key "foo/bar/baz" { policy = "deny" }
service "web" { policy = "write"  intentions = "read" }
operator = "read"
"""
JSON = """{"key_prefix": {"": {"policy": "read"}, "foo/": {"policy": "write"}},
 "key": {"foo/bar/baz": {"policy": "deny"}},
 "service": {"web": {"policy": "write", "intentions": "read"}}, "operator": "read"}"""


def test_hcl_and_json_give_the_same_policy() -> None:
    assert parse_rules(HCL) == parse_rules(JSON)
    r = parse_rules(HCL)
    assert r.operator == "read"
    assert Rule("key", False, "foo/bar/baz", "deny") in r.rules
    assert Rule("service", False, "web", "write", "read") in r.rules


def test_empty_rules_and_empty_scalar_are_no_rule() -> None:
    assert parse_rules("") == Rules()
    assert parse_rules("  \n") == Rules()
    assert parse_rules('operator = ""') == Rules()


def test_unknown_top_level_keys_are_ignored() -> None:
    assert parse_rules('mesh = "write"\nnode "a" { policy = "read" }').rules == (
        Rule("node", False, "a", "read"),
    )


def test_every_resource_kind() -> None:
    text = (
        "\n".join(
            f'{kind} "x" {{ policy = "read" }}'
            for kind in (
                "agent",
                "agent_prefix",
                "node",
                "node_prefix",
                "service",
                "service_prefix",
                "key",
                "key_prefix",
                "session",
                "event",
                "query_prefix",
            )
        )
        + '\nacl = "write"\nkeyring = "deny"\n'
    )
    r = parse_rules(text)
    assert len(r.rules) == 11
    assert (r.acl, r.keyring) == ("write", "deny")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('acl = "list"', 'Invalid acl policy: "list"'),
        ('operator = "List"', 'Invalid operator policy: "List"'),
        (
            'key "foo" {policy="nope"}',
            'Invalid key policy: &acl.KeyRule{Prefix:"foo", Policy:"nope"}',
        ),
        ('node_prefix "" {policy="list"}', "Invalid node_prefix policy: "),
        ('agent "a" {}', 'Invalid agent policy: &acl.AgentRule{Node:"a", Policy:""}'),
        ('service "foo" {policy="write" intentions="foo"}', "Invalid service intentions policy"),
        (
            'service_prefix "" {policy="read" intentions="x"}',
            "Invalid service_prefix intentions policy",
        ),
        ("key {", "Failed to parse ACL rules: "),
        ('{"key": ', "Failed to parse ACL rules: "),
        ('key "a" { policy = 5 }', "Invalid key policy: "),
        ('{"key": "nope"}', "Failed to parse ACL rules: "),
        ('{"key": {"a": 3}}', "Failed to parse ACL rules: "),
        ("[[[[", "Failed to parse ACL rules: "),
    ],
)
def test_bad_rules_give_consuls_error_on_one_line(text: str, error: str) -> None:
    with pytest.raises(RulesError) as exc:
        parse_rules(text)
    assert str(exc.value).startswith(error)
    assert "\n" not in str(exc.value)


def test_key_list_is_allowed_on_keys_only() -> None:
    assert parse_rules('key_prefix "" { policy = "list" }').rules[0].policy == "list"
