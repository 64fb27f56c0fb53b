"""Reading the RPC endpoints' arguments: strings, non-negative integers and service tags with
a ``BadRequestError`` for a wrong type, and the key that makes two blocking reads one."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from wanfedtx.catalog.errors import BadRequestError

Args = dict[str, Any]

_NOT_IN_KEY = frozenset(("MinQueryIndex", "MaxQueryTime"))


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Hashable):
        return value
    return repr(value)


def _query_key(method: str, args: Args) -> Hashable:
    """What makes two reads interchangeable: the method and every argument but the wait."""
    return (method, _freeze({k: v for k, v in args.items() if k not in _NOT_IN_KEY}))


def _str(args: Args, name: str) -> str:
    value = args.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequestError(f"{name} must be a string")
    return value


def _uint(args: Args, name: str) -> int:
    value = args.get(name) or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequestError(f"{name} must be a non-negative integer")
    return value


def _tags(args: Args) -> list[str]:
    tags = args.get("ServiceTags") or []
    tag = args.get("ServiceTag")
    if tag:
        tags = [*tags, tag]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadRequestError("ServiceTags must be an array of strings")
    return tags


def _has_tags(svc: Args, tags: list[str]) -> bool:
    have = {t.lower() for t in svc["Tags"]}
    return all(t.lower() in have for t in tags)
