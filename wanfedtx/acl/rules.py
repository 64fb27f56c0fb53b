# -*- test-case-name: tests.unit.acl.test_acl_rules -*-
"""The ACL rules language: HCL or JSON text -> ``Rules``, with Consul's error messages.

Resources with a segment (``agent``, ``event``, ``key``, ``node``, ``query``, ``service``,
``session``) come as exact blocks (``key "a/b" { policy = "read" }``) and prefix blocks
(``key_prefix "a/" { ... }``); ``acl``, ``keyring`` and ``operator`` are scalars. Levels are
``read``, ``write``, ``deny`` and, on ``key``/``key_prefix`` only, ``list``. An empty scalar is
no rule at all. Top-level keys the language does not know are ignored, as Consul's decoder does.
Errors are ``RulesError`` with Consul's text: ``Failed to parse ACL rules: <why>`` for text that
does not decode, ``Invalid <key> policy: <rule>`` for a bad level.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import attrs

from wanfedtx.config.errors import ConfigError
from wanfedtx.config.hclparse import parse_hcl
from wanfedtx.config.tree import Obj

READ, LIST, WRITE, DENY = "read", "list", "write", "deny"
LEVELS = (READ, LIST, WRITE, DENY)
# Consul's takesPrecedenceOver: deny > write > list > read
RANK = {READ: 1, LIST: 2, WRITE: 3, DENY: 4}

SEGMENTED = ("agent", "event", "key", "node", "query", "service", "session")
SCALARS = ("acl", "keyring", "operator")
# the Go struct and field names Consul prints in "Invalid <key> policy: %#v"
_GO_RULE = {
    "agent": ("AgentRule", "Node"),
    "event": ("EventRule", "Event"),
    "key": ("KeyRule", "Prefix"),
    "node": ("NodeRule", "Name"),
    "query": ("PreparedQueryRule", "Prefix"),
    "service": ("ServiceRule", "Name"),
    "session": ("SessionRule", "Node"),
}
MAX_RULES_BYTES = 1 << 20


class RulesError(ValueError):
    """Rules that do not parse or name a bad level; the text is Consul's, one line."""


@attrs.frozen
class Rule:
    """One block: resource kind, exact or prefix, its segment, level and (services) intentions."""

    resource: str
    prefix: bool
    segment: str
    policy: str
    intentions: str = ""


@attrs.frozen
class Rules:
    """One parsed policy: its blocks in source order and its scalars ("" = no rule)."""

    rules: tuple[Rule, ...] = ()
    acl: str = ""
    keyring: str = ""
    operator: str = ""


def stronger(a: str, b: str) -> str:
    """The level that wins a merge of two rules on one segment and kind."""
    if not a:
        return b
    if not b:
        return a
    return a if RANK[a] >= RANK[b] else b


def _go(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _valid(level: object, allow_list: bool) -> bool:
    return level in (READ, WRITE, DENY) or (allow_list and level == LIST)


def _items(value: object) -> Iterator[tuple[str, Any]]:
    """(key, value) pairs of an HCL ``Obj`` or a JSON object; lists of objects are flattened."""
    if isinstance(value, Obj):
        for item in value:
            yield item.key, item.value
    elif isinstance(value, dict):
        yield from value.items()
    elif isinstance(value, list):
        for v in value:
            yield from _items(v)
    else:
        raise RulesError(f"Failed to parse ACL rules: expected an object, got {_go(value)}")


def _decode(text: str) -> object:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RULES_BYTES:
        raise RulesError("Failed to parse ACL rules: rules are larger than 1 MiB")
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as e:
            raise RulesError(f"Failed to parse ACL rules: {e}") from None
    try:
        return parse_hcl(text, "rules")
    except ConfigError as e:
        raise RulesError(f"Failed to parse ACL rules: {e.message}") from None


def _block(resource: str, prefix: bool, segment: object, body: object) -> Rule:
    key = resource + ("_prefix" if prefix else "")
    if not isinstance(segment, str):
        raise RulesError(f"Failed to parse ACL rules: {key}: the name must be a string")
    fields: dict[str, Any] = {}
    for k, v in _items(body):
        fields[str(k).lower()] = v
    policy = fields.get("policy", "")
    intentions = fields.get("intentions", "") if resource == "service" else ""
    go_type, go_name = _GO_RULE[resource]
    if not _valid(policy, allow_list=resource == "key"):
        shown = f"&acl.{go_type}{{{go_name}:{_go(segment)}, Policy:{_go(policy)}}}"
        raise RulesError(f"Invalid {key} policy: {shown}")
    if intentions != "" and not _valid(intentions, allow_list=False):
        shown = f"&acl.{go_type}{{{go_name}:{_go(segment)}, Intentions:{_go(intentions)}}}"
        raise RulesError(f"Invalid {key} intentions policy: {shown}")
    return Rule(resource, prefix, segment, str(policy), str(intentions))


def parse_rules(text: str) -> Rules:
    """Parse HCL or JSON rules text; raise ``RulesError`` with Consul's message."""
    if not isinstance(text, str):
        raise RulesError("Failed to parse ACL rules: Rules must be a string")
    if text.strip() == "":
        return Rules()
    tree = _decode(text)
    rules: list[Rule] = []
    scalars = {name: "" for name in SCALARS}
    for key, value in _items(tree):
        key = str(key)
        if key in SCALARS:
            if value is None or value == "":
                continue
            if not _valid(value, allow_list=False):
                raise RulesError(f"Invalid {key} policy: {_go(value)}")
            scalars[key] = stronger(scalars[key], str(value))
            continue
        resource, _, suffix = key.partition("_")
        if resource not in SEGMENTED or suffix not in ("", "prefix"):
            continue  # Consul's decoder ignores keys it does not know
        for segment, body in _items(value):
            rules.append(_block(resource, suffix == "prefix", segment, body))
    return Rules(tuple(rules), **scalars)
