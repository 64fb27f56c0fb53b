"""Log level parsing and filtering."""

from __future__ import annotations

import io
import json

import pytest
from twisted.logger import Logger, LogLevel, LogPublisher

from wanfedtx import logs
from wanfedtx.logs import UnknownLogLevel, make_observer, parse_level


def test_consul_level_names() -> None:
    assert parse_level("WARN").name == "warn"
    assert parse_level("err").name == "error"
    with pytest.raises(UnknownLogLevel, match="Invalid log level"):
        parse_level("loud")


def test_filtering_and_json_output() -> None:
    out = io.StringIO()
    publisher = LogPublisher(make_observer("warn", json=True, out=out))
    log = Logger(namespace="test", observer=publisher)
    log.info("hidden {x}", x=1)
    log.warn("shown {x}", x=2)
    records = [json.loads(line.strip("\x1e")) for line in out.getvalue().splitlines() if line]
    assert [r["x"] for r in records] == [2]


def test_enabled_follows_the_lowest_observer_level() -> None:
    saved = list(logs._lowest_level)
    try:
        logs._lowest_level.clear()
        assert logs.enabled(LogLevel.debug)  # no observer made yet: nothing is dropped
        logs.make_observer("warn", out=io.StringIO())
        assert not logs.enabled(LogLevel.info) and logs.enabled(LogLevel.error)
        logs.make_observer("info", out=io.StringIO())
        assert logs.enabled(LogLevel.info) and not logs.enabled(LogLevel.debug)
        logs.make_observer("error", out=io.StringIO())  # a stricter one changes nothing
        assert logs.enabled(LogLevel.info)
    finally:
        logs._lowest_level[:] = saved


def test_twisted_chatter_is_debug_only() -> None:
    from twisted.internet.protocol import Factory

    out = io.StringIO()
    publisher = LogPublisher(make_observer("info", out=out))
    Logger(namespace="twisted.internet.protocol.Factory", observer=publisher).info(
        "Starting factory {factory!r}", factory=Factory())
    Logger(namespace="log_legacy", observer=publisher).info(  # what log.msg becomes
        "{log_text}", log_text="Site starting on 8500", message=("Site starting on 8500",))
    Logger(namespace="agent", observer=publisher).info("Started HTTP server")
    assert out.getvalue().count("\n") == 1 and "Started HTTP server" in out.getvalue()
    debug_out = io.StringIO()
    debug = LogPublisher(make_observer("debug", out=debug_out))
    Logger(namespace="twisted", observer=debug).info("Stopping factory {f}", f=1)
    assert "Stopping factory 1" in debug_out.getvalue()


def test_twistd_logging_sets_the_application_observer_where_twistd_would_write(
    tmp_path: object,
) -> None:
    import sys

    from twisted.application.service import Application, Service
    from twisted.logger import ILogObserver

    from wanfedtx.cli.twistd import TwistdLogging
    from wanfedtx.logs import twistd_destination

    assert twistd_destination({"nodaemon": True, "logfile": None}) is sys.stdout
    assert twistd_destination({"logfile": "-"}) is sys.stdout
    assert twistd_destination({"logger": "x.y", "nodaemon": True}) is None
    assert twistd_destination({"syslog": True}) is None
    app = Application("t")
    child = Service()
    root = TwistdLogging(child, "warn", False, {"nodaemon": True})
    root.setServiceParent(app)
    assert ILogObserver.providedBy(app.getComponent(ILogObserver))
    assert list(root) == [child]
    other = Application("u")
    TwistdLogging(Service(), "warn", False, {"logger": "mine"}).setServiceParent(other)
    assert other.getComponent(ILogObserver, None) is None  # --logger: twistd decides
