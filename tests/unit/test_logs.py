"""Log level parsing and filtering."""

from __future__ import annotations

import io
import json

import pytest
from twisted.logger import Logger, LogPublisher

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
