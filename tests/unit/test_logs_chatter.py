"""Twisted's factory and port chatter is DEBUG; observers honour the level with it."""

from __future__ import annotations

import io
import time

from twisted.logger import Logger, LogLevel, LogPublisher

from wanfedtx.logs import event_level, make_observer


def test_factory_and_port_lines_are_debug() -> None:
    chatter = [
        {"log_level": LogLevel.info, "log_format": "Starting factory {factory!r}",
         "factory": "<f>", "log_namespace": "twisted.internet.protocol.Factory"},
        {"log_level": LogLevel.info, "log_format": "{log_text}",
         "log_text": "Site starting on 8500", "log_namespace": "log_legacy"},
        {"log_level": LogLevel.info, "log_format": "{log_text}",
         "log_text": "(TCP Port 8500 Closed)", "log_namespace": "log_legacy"},
        {"log_level": LogLevel.info, "log_format": "Stopping protocol {p}", "p": "<p>"},
    ]
    assert [event_level(e) for e in chatter] == [LogLevel.debug] * 4
    kept = {"log_level": LogLevel.info, "log_format": "Started HTTP server", "log_namespace": "a"}
    assert event_level(kept) == LogLevel.info
    assert event_level({**chatter[0], "log_level": LogLevel.warn}) == LogLevel.warn


def test_info_observer_hides_chatter_debug_observer_tags_it() -> None:
    info, debug = io.StringIO(), io.StringIO()
    publisher = LogPublisher(make_observer("info", out=info), make_observer("debug", out=debug))
    log = Logger(namespace="twisted.internet.protocol.Factory", observer=publisher)
    log.info("Starting factory {factory!r}", factory="<f>")
    log.info("agent ready")
    publisher({"log_level": LogLevel.info, "log_format": "{log_text}", "log_time": time.time(),
               "log_text": "HTTPFactory starting on 8500", "log_namespace": "log_legacy"})
    # Twisted's own namespaces show as ``twisted`` (docs/logging.md)
    assert info.getvalue().count("\n") == 1 and "[INFO]  twisted: agent ready" in info.getvalue()
    lines = debug.getvalue().splitlines()
    assert len(lines) == 3
    assert "[DEBUG] twisted: Starting factory '<f>'" in lines[0]
    assert "[DEBUG]" in lines[2] and lines[2].endswith("HTTPFactory starting on 8500")


def test_a_live_stream_lowers_what_is_built() -> None:
    from wanfedtx import logs

    saved = list(logs._lowest_level)
    try:
        logs._lowest_level[:] = [LogLevel.info]
        assert not logs.enabled(LogLevel.debug)
        logs.stream_opened(LogLevel.debug)
        assert logs.enabled(LogLevel.debug)
        logs.stream_closed(LogLevel.debug)
        assert not logs.enabled(LogLevel.debug)
    finally:
        logs._lowest_level[:] = saved
