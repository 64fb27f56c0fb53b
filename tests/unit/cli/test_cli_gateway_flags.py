"""``wanfed gateway`` flag parsing: Go durations and Consul's log levels, errors as one line."""

from __future__ import annotations

import argparse

import pytest

from wanfedtx.cli.gateway import configure


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wanfed gateway")
    configure(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h30m", 5400.0), ("250ms", 0.25), ("5s", 5.0), ("2m", 120.0), ("1.5h", 5400.0),
     ("90", 90.0), ("0", 0.0)],
)
def test_idle_timeout_takes_go_durations(text: str, seconds: float) -> None:
    assert _parse("-address", "127.0.0.1:0", "-idle-timeout", text).idle_timeout == seconds


@pytest.mark.parametrize("text", ["10 s", "5x", "-1s", "h"])
def test_bad_durations_are_one_usage_line(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parse("-address", "127.0.0.1:0", "-hello-timeout", text)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("wanfed gateway: error: argument -hello-timeout/--hello-timeout:")
    assert "Traceback" not in "\n".join(err)


def test_log_level_is_checked_when_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    assert _parse("-address", "127.0.0.1:0", "-log-level", "WARN").log_level == "WARN"
    with pytest.raises(SystemExit):
        _parse("-address", "127.0.0.1:0", "-log-level", "loud")
    assert "Invalid log level" in capsys.readouterr().err
