# -*- test-case-name: tests.unit.config.test_config_ignored_keys -*-
"""Consul keys that do not apply to wanfed: accepted, ignored, and named in one warning.

An operator moving a Consul config over keeps its ``ui_config``, ``telemetry { statsd_address }``
or ``enable_syslog`` lines; refusing them like typos would make every such file fail. The schema
(``config/schema.py``) marks these keys ``ignored``: any value is accepted, and
:func:`ignored_keys_warning` names every one the merged config sets, in one warning printed at
load. A key that is neither known nor listed here is still refused (``invalid config key ...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wanfedtx.config.tree import Obj

# telemetry { ... }: sinks other than Prometheus, and metric filters.
IGNORED_TELEMETRY = (
    "metrics_prefix", "statsd_address", "statsite_address", "dogstatsd_addr", "dogstatsd_tags",
    "circonus_api_token", "circonus_api_app", "circonus_api_url", "circonus_submission_interval",
    "circonus_submission_url", "circonus_check_id", "circonus_check_force_metric_activation",
    "circonus_check_instance_id", "circonus_check_search_tag", "circonus_check_display_name",
    "circonus_check_tags", "circonus_broker_id", "circonus_broker_select_tag", "filter_default",
    "prefix_filter", "allowed_prefixes", "blocked_prefixes", "disable_compat_1.9",
)

# Top-level keys: no DNS server, no bundled Consul UI, no syslog sink, no script checks or
# watches, no autopilot settings, no config entries here.
IGNORED_TOP_LEVEL = (
    "ui", "ui_config", "ui_dir", "ui_content_path", "enable_syslog", "syslog_facility",
    "dns_config", "recursors", "enable_script_checks", "enable_local_script_checks",
    "disable_update_check", "disable_remote_exec", "disable_anonymous_signature",
    "enable_debug", "pid_file", "watches", "config_entries", "autopilot", "audit",
    "http_config", "discard_check_output", "auto_encrypt", "auto_config", "license_path",
    "raft_snapshot_threshold", "raft_snapshot_interval", "raft_trailing_logs",
    "session_ttl_min", "reconnect_timeout", "reconnect_timeout_wan", "translate_wan_addrs",
    "enable_central_service_config", "check_update_interval", "discovery_max_stale",
)


def plain_value(v: Any) -> Any:
    """A parsed value as plain dicts and lists (for keys that are kept only to be named)."""
    if isinstance(v, Obj):
        return {item.key: plain_value(item.value) for item in v}
    if isinstance(v, list):
        return [plain_value(x) for x in v]
    return v


def ignored_keys(data: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The paths of the keys ``data`` sets that ``schema`` marks ``ignored``, sorted."""
    out: list[str] = []
    for key, value in data.items():
        f = schema.get(key)
        if f is None:
            continue
        if f.kind == "ignored":
            out.append(prefix + key)
        elif f.kind == "block" and isinstance(value, Mapping):
            out.extend(ignored_keys(value, f.fields, prefix + key + "."))
    return sorted(out)


def ignored_keys_warning(data: Mapping[str, Any], schema: Mapping[str, Any]) -> str | None:
    """One warning naming every key of ``data`` that does not apply here, or None."""
    keys = ignored_keys(data, schema)
    if not keys:
        return None
    return "config: these Consul keys do not apply to wanfed and are ignored: " + ", ".join(keys)
