# -*- test-case-name: tests.unit.config.test_config_acl -*-
"""The ``acl { }`` block's validation, with Consul's messages.

``default_policy`` must be ``allow`` or ``deny`` (``Unsupported default ACL policy: <v>``) and
``down_policy`` one of ``allow``, ``deny``, ``extend-cache``, ``async-cache``
(``Unsupported down ACL policy: <v>``). Consul checks both whether or not ACLs are enabled, so
we do too. ``primary_datacenter`` (default: ``datacenter``) is the ACL authority. The token
values are free-form strings: a management token that is not a UUID only earns Consul's
deprecation warning. Consul's legacy top-level ``acl_*`` keys are not in the schema and fail
as unknown keys. Roles are not implemented: a ``role_ttl`` set by the operator earns a warning
(it is accepted, as Consul's key, and has no effect).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from wanfedtx.config.errors import ValidationError
from wanfedtx.config.runtime import RuntimeConfig

DEFAULT_POLICIES = ("allow", "deny")
DOWN_POLICIES = ("allow", "deny", "extend-cache", "async-cache")
NON_UUID_MASTER = "Configuring a non-UUID master token is deprecated"
ROLE_TTL_IGNORED = "acl.role_ttl has no effect: ACL roles are not supported"

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def check_acl(
    rt: RuntimeConfig,
    origins: Mapping[str, tuple[str, int]],
    error: Callable[[str, str], ValidationError],
    warnings: list[str],
) -> None:
    """Raise Consul's error for a bad default/down policy; warn about a non-UUID master token."""
    role_ttl = origins.get("acl.role_ttl")
    if role_ttl is not None and role_ttl[0] not in ("default", "dev"):
        warnings.append(ROLE_TTL_IGNORED)
    if rt.acl_default_policy not in DEFAULT_POLICIES:
        raise error(
            f"Unsupported default ACL policy: {rt.acl_default_policy}", "acl.default_policy"
        )
    if rt.acl_down_policy not in DOWN_POLICIES:
        raise error(f"Unsupported down ACL policy: {rt.acl_down_policy}", "acl.down_policy")
    master = rt.acl_tokens.initial_management
    if rt.acls_enabled and rt.server_mode and master and not _UUID_RE.match(master):
        warnings.append(NON_UUID_MASTER)
