"""Consul keys that do not apply here are accepted with ONE warning naming them (HCL and JSON,
across files); misspelt keys are still refused; the log_file keys load with Consul's defaults."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wanfedtx.config import ConfigError, LoadResult

IGNORED_LINE = "config: these Consul keys do not apply to wanfed and are ignored: "


def _ignored_warnings(result: LoadResult) -> list[str]:
    return [w for w in result.warnings if w.startswith(IGNORED_LINE)]


def test_consul_keys_that_do_not_apply_give_one_warning(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    a = write("a.hcl", 'ui_config { enabled = true }\nenable_syslog = true\n'
                       'telemetry {\n  statsd_address = "127.0.0.1:8125"\n'
                       '  prometheus_retention_time = "60s"\n  disable_hostname = true\n}\n')
    b = write("b.json", '{"telemetry": {"dogstatsd_addr": "127.0.0.1:8125",'
                        ' "circonus_api_token": "x"}, "dns_config": {"allow_stale": true},'
                        ' "recursors": ["8.8.8.8"]}')
    result = loadcfg(a, b)
    [warning] = _ignored_warnings(result)
    assert warning == IGNORED_LINE + (
        "dns_config, enable_syslog, recursors, telemetry.circonus_api_token, "
        "telemetry.dogstatsd_addr, telemetry.statsd_address, ui_config"
    )


def test_no_warning_without_such_keys(loadcfg: Callable[..., LoadResult],
                                      write: Callable[[str, str], str]) -> None:
    a = write("a.hcl", 'telemetry { prometheus_retention_time = "60s" }\n')
    assert _ignored_warnings(loadcfg(a)) == []


@pytest.mark.parametrize(
    ("text", "key"),
    [("ui_confg { enabled = true }\n", "ui_confg"),
     ('telemetry { statsd_adress = "x" }\n', "telemetry.statsd_adress"),
     ("log_rotate_max_file = 2\n", "log_rotate_max_file")],
)
def test_typos_are_still_refused(loadcfg: Callable[..., LoadResult],
                                 write: Callable[[str, str], str], text: str, key: str) -> None:
    a = write("a.hcl", text)
    with pytest.raises(ConfigError, match=f"invalid config key {key}"):
        loadcfg(a)


def test_log_file_keys(loadcfg: Callable[..., LoadResult],
                       write: Callable[[str, str], str]) -> None:
    rt = loadcfg().runtime
    assert (rt.log_file, rt.log_rotate_bytes, rt.log_rotate_duration,
            rt.log_rotate_max_files) == ("", 0, 0.0, 0)
    a = write("a.hcl", 'log_file = "/var/log/wanfed/"\nlog_rotate_bytes = 1048576\n'
                       'log_rotate_duration = "1h30m"\nlog_rotate_max_files = -1\n')
    rt = loadcfg(a).runtime
    assert (rt.log_file, rt.log_rotate_bytes, rt.log_rotate_duration,
            rt.log_rotate_max_files) == ("/var/log/wanfed/", 1048576, 5400.0, -1)
    sanitized = rt.sanitized()
    assert sanitized["LogFile"] == "/var/log/wanfed/" and sanitized["LogRotateMaxFiles"] == -1


def test_a_bad_rotate_duration_is_refused(loadcfg: Callable[..., LoadResult],
                                          write: Callable[[str, str], str]) -> None:
    a = write("a.hcl", 'log_rotate_duration = "1d"\n')
    with pytest.raises(ConfigError, match='log_rotate_duration: invalid duration: "1d"'):
        loadcfg(a)
