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


def test_twistd_logging_sets_the_application_observer_where_twistd_would_write(
    tmp_path: object,
) -> None:
    from twisted.application.service import Application, Service
    from twisted.logger import ILogObserver

    from wanfedtx.cli.twistd import TwistdRoot
    from wanfedtx.logs import twistd_log_observer

    app = Application("t")
    child = Service()
    observer = twistd_log_observer({"nodaemon": True})
    assert observer is not None
    root = TwistdRoot(child, observer)
    root.setServiceParent(app)
    assert app.getComponent(ILogObserver) is observer
    assert list(root) == [child]
    other = Application("u")
    TwistdRoot(Service(), twistd_log_observer({"logger": "mine"})).setServiceParent(other)
    assert other.getComponent(ILogObserver, None) is None  # --logger: twistd decides
