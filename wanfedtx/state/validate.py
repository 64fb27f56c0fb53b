# -*- test-case-name: tests.unit.state -*-
"""Node and service metadata rules.

Keys starting with ``consul-`` are reserved; the only exception is ``consul-wan-federation`` on
services of kind ``mesh-gateway``. Sizes and characters follow the reference's limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from wanfedtx.state.errors import InvalidMetadataError

META_MAX_PAIRS = 64
META_KEY_MAX_LEN = 128
META_VALUE_MAX_LEN = 512
RESERVED_PREFIX = "consul-"
WAN_FEDERATION_KEY = "consul-wan-federation"
KIND_MESH_GATEWAY = "mesh-gateway"

_KEY_FORMAT = re.compile(r"^[a-zA-Z0-9_-]+$")


def validate_node_meta(meta: Mapping[str, object] | None, allow_consul_prefix: bool) -> None:
    _validate(meta, allow_consul_prefix, frozenset())


def validate_service_meta(
    kind: str, meta: Mapping[str, object] | None, allow_consul_prefix: bool
) -> None:
    allowed = frozenset({WAN_FEDERATION_KEY}) if kind == KIND_MESH_GATEWAY else frozenset()
    _validate(meta, allow_consul_prefix, allowed)


def service_meta_problem(kind: str, meta: Mapping[str, object] | None) -> str | None:
    """The first problem ``validate_service_meta(kind, meta, False)`` raises for, without the
    pair it names (config files word their own error around it); None when valid."""
    try:
        validate_service_meta(kind, meta, False)
    except InvalidMetadataError as exc:
        return exc.problem
    return None


def _validate(
    meta: Mapping[str, object] | None, allow_consul_prefix: bool, allowed: frozenset[str]
) -> None:
    if not meta:
        return
    if len(meta) > META_MAX_PAIRS:
        raise InvalidMetadataError(
            f"Node metadata cannot contain more than {META_MAX_PAIRS} key/value pairs"
        )
    for key, value in meta.items():
        problem = _pair_problem(key, value, allow_consul_prefix or key in allowed)
        if problem:
            raise InvalidMetadataError(
                f"Couldn't load metadata pair ('{_shown(key)}', '{_shown(value)}'): {problem}",
                problem,
            )


def _shown(text: object) -> str:
    """``text`` for an error message: control characters escaped (a newline in a value must
    not split the one-line error the API answers and logs)."""
    raw = str(text)
    if raw.isprintable():
        return raw
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)


def _pair_problem(key: object, value: object, allow_consul_prefix: bool) -> str | None:
    if not isinstance(key, str) or not isinstance(value, str):
        return "Key and value must be strings"
    if key == "":
        return "Key cannot be blank"
    if not _KEY_FORMAT.match(key):
        return "Key contains invalid characters"
    if len(key) > META_KEY_MAX_LEN:
        return f"Key is too long (limit: {META_KEY_MAX_LEN} characters)"
    if key.startswith(RESERVED_PREFIX) and not allow_consul_prefix:
        return f"Key prefix '{RESERVED_PREFIX}' is reserved for internal use"
    if len(value) > META_VALUE_MAX_LEN:
        return f"Value is too long (limit: {META_VALUE_MAX_LEN} characters)"
    return None
