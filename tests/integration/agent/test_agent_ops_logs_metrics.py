"""A real ``wanfed agent`` and a real ``wanfed gateway``, as an operator runs them:

* the agent at INFO with ``log_json``, ``log_file`` and Consul keys that do not apply here: one
  warning names those keys; every stdout line is JSON with a documented ``@module`` and no
  Twisted internals; no DEBUG line; the same lines go to ``wanfed-<nanoseconds>.log``;
* its Prometheus scrape has the raft, federation and process metrics, every value in Go's form;
* the gateway's ``/stats/prometheus`` has ``envoy_server_*`` and per-cluster membership gauges;
* every metric name in docs/grafana-dashboard.json is in one of these scrapes (or, for the
  gauges only a secondary datacenter's leader sets, in the registry its code fills).
"""

from __future__ import annotations

import json
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrape_support import agent, connect_through, families, gateway, get
from twisted.internet.task import Clock

from wanfedtx.federation.metrics import ReplicationMetrics
from wanfedtx.logs import LOGGERS
from wanfedtx.metrics import Registry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
IGNORED = ("config: these Consul keys do not apply to wanfed and are ignored: "
           "telemetry.dogstatsd_addr, telemetry.statsd_address, ui_config")


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run the agent once: scrape it, stop it, keep its output and log files."""
    tmp = tmp_path_factory.mktemp("ops")
    logs = tmp / "logs"
    logs.mkdir()
    extra = (
        'log_level = "INFO"\nlog_json = true\n'
        f'log_file = "{logs}/"\nlog_rotate_max_files = 3\n'
        'ui_config {\n  enabled = true\n}\n'
        'telemetry {\n  statsd_address = "127.0.0.1:8125"\n  dogstatsd_addr = "127.0.0.1:8125"\n'
        '  prometheus_retention_time = "60s"\n}\n'
    )
    with agent(tmp, extra) as (proc, port):
        base = f"http://127.0.0.1:{port}"
        for path in ("/v1/agent/self", "/v1/catalog/nodes", "/v1/kv/x?recurse"):
            try:
                get(base + path)
            except OSError:
                pass  # a 404 for the KV read is fine: a request was served
        scrape = get(base + "/v1/agent/metrics?format=prometheus")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    yield {"out": out, "err": err, "scrape": scrape, "logs": logs, "code": proc.returncode}


def _json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return records


def test_one_warning_names_the_keys_that_do_not_apply(ran: dict[str, Any]) -> None:
    records = _json_lines(ran["out"])
    warnings = [r for r in records if "do not apply to wanfed" in r["@message"]]
    assert [(r["@level"], r["@message"]) for r in warnings] == [("warn", IGNORED)], ran["err"]


def test_json_logs_have_documented_modules_and_no_twisted_internals(
    ran: dict[str, Any],
) -> None:
    records = _json_lines(ran["out"])
    assert len(records) > 5
    names = set(LOGGERS.values())
    for r in records:
        assert r["@module"] in names or r["@module"] == "", r
        assert not [k for k in r if k.startswith("log_")], r
        assert not {"system", "isError", "format"} & set(r), r
        assert r["@level"] != "debug", r
    assert "0x" not in ran["out"]
    modules = {r["@module"] for r in records}
    assert {"agent", "agent.server.raft"} <= modules, modules


def test_the_log_file_holds_the_same_lines(ran: dict[str, Any]) -> None:
    files = sorted(ran["logs"].iterdir())
    assert [f.name for f in files] and all(
        re.fullmatch(r"wanfed-\d{19}\.log", f.name) for f in files
    ), files
    in_file = _json_lines("".join(f.read_text() for f in files))
    assert [r["@message"] for r in in_file if r["@module"] == "agent.server.raft"] == [
        r["@message"] for r in _json_lines(ran["out"]) if r["@module"] == "agent.server.raft"
    ]
    assert any(IGNORED == r["@message"] for r in in_file)


def test_the_agent_scrape(ran: dict[str, Any]) -> None:
    fams = families(ran["scrape"])
    for name in ("consul_raft_state_leader", "consul_raft_commitTime", "consul_raft_apply",
                 "consul_raft_leader_lastContact", "consul_federation_state_age",
                 "process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds", "process_start_time_seconds"):
        assert name in fams, name
    assert fams["consul_raft_state_leader"] == [("", "1")]
    # values are Go's shortest form (1.234567e+06), never Python's 6-digit %g (1.23457e+06).
    # A byte count in pages often has exactly 6 significant digits, which both write alike
    # (68812800: 6.88128e+07), so those are left out; the start time (a Unix time with a
    # fraction) shows the digits %g would drop.
    for name, samples in fams.items():
        for _labels, value in samples:
            if not name.endswith("_bytes"):
                assert not re.fullmatch(r"-?\d\.\d{5}e[+-]\d\d", value), (name, value)
    ((_, start),) = fams["process_start_time_seconds"]
    assert len(start.split("e")[0].replace(".", "").lstrip("-")) > 6, start


@pytest.fixture(scope="module")
def gateway_scrape(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("gw")
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen()
    try:
        with gateway(tmp, upstream.getsockname()[1]) as (proc, admin, port):
            for name in ("up.test", "down.test", "nowhere.test"):
                connect_through(port, name)
            text = get(f"http://127.0.0.1:{admin}/stats/prometheus")
            stats = get(f"http://127.0.0.1:{admin}/stats")
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    finally:
        upstream.close()
    assert "server.live: 1" in stats.splitlines()
    return text


def test_the_gateway_scrape(gateway_scrape: str) -> None:
    fams = families(gateway_scrape)
    assert fams["envoy_server_live"] == [("", "1")]
    assert int(fams["envoy_server_uptime"][0][1]) >= 0
    assert "envoy_server_total_connections" in fams
    healthy = dict(fams["envoy_cluster_membership_healthy"])
    total = dict(fams["envoy_cluster_membership_total"])
    assert healthy == {'{envoy_cluster_name="down"}': "0", '{envoy_cluster_name="up"}': "1"}
    assert total == {'{envoy_cluster_name="down"}': "1", '{envoy_cluster_name="up"}': "2"}


# -- the Grafana dashboard ----------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
             "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, ranges, grouping labels,
    Grafana variables, functions and keywords taken out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        after = text[m.end():].lstrip()
        if after.startswith("(") or word in _KEYWORDS:
            continue  # a function (sum, rate, time...) or a keyword
        names.add(word)
    return names


def test_metric_names_are_extracted() -> None:
    assert metric_names(
        'sum by (dc) (rate(consul_rpc_cross_dc{job=~"$job", a="}"}[$__rate_interval])) '
        "/ on (instance) process_max_fds - time()"
    ) == {"consul_rpc_cross_dc", "process_max_fds"}


def dashboard_exprs() -> list[str]:
    dash = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = []
    panels = list(dash["panels"])
    while panels:
        p = panels.pop()
        panels.extend(p.get("panels", []))
        exprs.extend(t["expr"] for t in p.get("targets", []))
    return exprs


def test_the_dashboard_uses_only_exported_names(
    ran: dict[str, Any], gateway_scrape: str
) -> None:
    registry = Registry()
    ReplicationMetrics(registry, Clock())  # set only by a secondary datacenter's leader
    known = (set(families(ran["scrape"])) | set(families(gateway_scrape))
             | set(families(registry.render())))
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    used = set().union(*(metric_names(e) for e in exprs))
    assert {"consul_federation_state_age", "envoy_server_live",
            "envoy_cluster_membership_healthy", "consul_raft_commitTime_sum"} <= used
    unknown = sorted(n for n in used if n not in known)
    assert unknown == [], f"not exported: {unknown}"


def test_the_agent_stopped_cleanly(ran: dict[str, Any]) -> None:
    # a server stopped by SIGTERM without leave_on_terminate exits 1, as Consul's
    assert ran["code"] == 1, ran["err"]
    assert "Traceback" not in ran["err"] + ran["out"]


