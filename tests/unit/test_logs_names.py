"""Logger names: every namespace the code logs under is in ``wanfedtx.logs.LOGGERS``, its name is
in the table of docs/logging.md, and lines (text and JSON) show that name; JSON lines carry no
Twisted internals."""

from __future__ import annotations

import ast
import io
import json
import re
from pathlib import Path

from twisted.logger import Logger, LogLevel, LogPublisher

from wanfedtx.logs import LOGGERS, format_json, format_text, logger_name, make_observer

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


def code_namespaces() -> dict[str, list[str]]:
    """namespace -> files, for every ``Logger(...)`` made in the package and the twistd plugin
    (``Logger()`` takes its module's name, as twisted.logger does)."""
    found: dict[str, list[str]] = {}
    files = [*sorted((ROOT / "wanfedtx").rglob("*.py")), ROOT / "twisted/plugins/wanfed_plugin.py"]
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in ("Logger", "TwistedLogger"):
                continue
            ns_nodes = [k.value for k in node.keywords if k.arg == "namespace"]
            if not ns_nodes and node.args:
                ns_nodes = [node.args[0]]
            if not ns_nodes:
                ns = _module_name(path)
            elif isinstance(ns_nodes[0], ast.Constant) and isinstance(ns_nodes[0].value, str):
                ns = ns_nodes[0].value
            else:
                continue  # a computed namespace (none today)
            found.setdefault(ns, []).append(str(path.relative_to(ROOT)))
    return found


def documented_names() -> set[str]:
    text = (ROOT / "docs" / "logging.md").read_text()
    section = text.split("## Logger names", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.MULTILINE))


def test_the_walk_finds_the_loggers() -> None:
    found = code_namespaces()
    assert len(found) > 20
    assert "wanfedtx.rpc" in found and "agent.server.replication.federation_state" in found


def test_every_namespace_in_the_code_is_in_the_table() -> None:
    missing = {ns: files for ns, files in code_namespaces().items() if ns not in LOGGERS}
    assert missing == {}, "add these namespaces to wanfedtx.logs.LOGGERS and docs/logging.md"


def test_the_documented_table_is_the_code_table() -> None:
    assert documented_names() == set(LOGGERS.values())


def test_consul_names_where_consul_has_them() -> None:
    assert logger_name("wanfedtx.raft.transport") == "agent.server.raft"
    assert logger_name("wanfedtx.rpc") == "agent.server.rpc"
    assert logger_name("gateway_locator") == "agent.server.gateway_locator"
    assert logger_name("agent.server.replication.federation_state") == (
        "agent.server.replication.federation_state"
    )
    assert logger_name("twisted.web.server.Site") == "twisted"
    assert logger_name("not.listed") == "not.listed"


def test_text_lines_show_the_table_name_once() -> None:
    out = io.StringIO()
    publisher = LogPublisher(make_observer("debug", out=out))
    Logger(namespace="wanfedtx.raft", observer=publisher).info("entering leader state")
    Logger(namespace="wanfedtx.local.ae", observer=publisher).info("agent: Synced node info")
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("[INFO]  agent.server.raft: entering leader state")
    assert lines[1].endswith("[INFO]  agent: Synced node info")


class _Factory:
    pass


def test_json_lines_carry_no_twisted_internals() -> None:
    factory = _Factory()
    events = [
        # a modern Twisted event: an object as a field
        {"log_level": LogLevel.info, "log_format": "Starting factory {factory!r}",
         "factory": factory, "log_namespace": "twisted.internet.protocol.Factory",
         "log_source": factory, "log_logger": object(), "log_time": 1.5},
        # a legacy (twisted.python.log) event bridged to twisted.logger
        {"log_level": LogLevel.info, "log_format": "{log_text}", "log_text": "Site starting",
         "log_namespace": "log_legacy", "log_system": "-", "system": "-", "isError": 0,
         "message": ("Site starting",), "format": None, "time": 1.5, "log_legacy": object()},
        # one of ours, with plain fields
        {"log_level": LogLevel.warn, "log_format": "refused: peer={peer}", "peer": "10.0.0.1:9",
         "log_namespace": "wanfedtx.rpc", "log_time": 1.5, "sizes": [1, 2],
         "log_source": object()},
    ]
    records = []
    for event in events:
        line = format_json(event)
        assert line is not None and "0x" not in line, line
        records.append(json.loads(line))
    for r in records:
        extra = {k for k in r if not k.startswith("@")}
        assert not {k for k in extra if k.startswith("log_")}
        assert not extra & {"system", "isError", "format", "message", "time", "factory"}
    assert [r["@module"] for r in records] == ["twisted", "twisted", "agent.server.rpc"]
    assert records[2]["peer"] == "10.0.0.1:9" and records[2]["sizes"] == [1, 2]
    assert records[1]["@message"] == "Site starting"


def test_text_lines_name_the_table_name_for_twisted() -> None:
    line = format_text({"log_level": LogLevel.warn, "log_format": "x",
                        "log_namespace": "twisted.internet.tcp.Port", "log_time": 0.0})
    assert line is not None and line.rstrip().endswith("[WARN]  twisted: x")


def test_twisted_web_access_lines_and_the_reactor_stop_are_debug() -> None:
    from wanfedtx.logs import event_level

    access = {"log_level": LogLevel.info, "log_format": "{log_text}", "log_namespace": "log_legacy",
              "log_text": '"127.0.0.1" - - [06/Dec/2026:22:12:25 +0000] "GET /clusters?format=json'
                          ' HTTP/1.1" 200 823 "-" "Python-urllib/3.11"'}
    stop = {"log_level": LogLevel.info, "log_format": "Main loop terminated.",
            "log_namespace": "twisted.internet.base"}
    ours = {"log_level": LogLevel.info, "log_format": '"{x}" - - [a]', "x": "1",
            "log_namespace": "agent"}
    assert event_level(access) == LogLevel.debug
    assert event_level(stop) == LogLevel.debug
    assert event_level(ours) == LogLevel.info
