# -*- test-case-name: tests.security.test_security_acl_stopgap -*-
"""The ACL stopgap: ``acl { enabled = true }`` refuses to load; other acl keys load with a warning.

ACLs are not implemented yet. An agent that believed them enabled would serve every request
without a token while the operator thinks ``default_policy = "deny"`` protects it, so an enabled
ACL system is a configuration error (one line, like every other one). The other ``acl`` keys stay
accepted so configurations written for Consul load, but each one set by the operator is named in
one warning at load: nothing in the configuration is silently ignored. Consul's legacy top-level
``acl_*`` keys are not in the schema and fail as unknown keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from wanfedtx.config.errors import ValidationError
from wanfedtx.config.runtime import RuntimeConfig

NOT_AVAILABLE = (
    "ACLs are not available yet in this version of wanfed (acl.enabled = true); "
    "set acl { enabled = false } or remove the acl block"
)
NOT_ENFORCED = "ACLs are not available yet in this version; these acl keys have no effect: {keys}"

_BUILTIN_SOURCES = ("default", "dev")


def check_acl(
    rt: RuntimeConfig,
    origins: Mapping[str, tuple[str, int]],
    error: Callable[[str, str], ValidationError],
    warnings: list[str],
) -> None:
    """Raise for ``acl.enabled = true``; append one warning naming the other acl keys set."""
    if rt.acls_enabled:
        raise error(NOT_AVAILABLE, "acl.enabled")
    set_by_operator = {
        path
        for path, (source, _line) in origins.items()
        if path.startswith("acl.") and path != "acl.enabled" and source not in _BUILTIN_SOURCES
    }
    # leaf keys only: ``acl.tokens`` is named through ``acl.tokens.agent``
    keys = sorted(p for p in set_by_operator if not any(q.startswith(p + ".") for q in origins))
    if keys:
        warnings.append(NOT_ENFORCED.format(keys=", ".join(keys)))
