"""``wanfed gateway -loop-relay``: how the flag resolves into the relay settings."""

from __future__ import annotations

import argparse

import pytest

from wanfedtx.cli import gateway as gateway_cli
from wanfedtx.cli.main import UsageError
from wanfedtx.gateway import relaynative


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    gateway_cli.configure(parser)
    return parser.parse_args(["-address", "127.0.0.1:0", "-routes", "r.json", *argv])


def test_default_is_auto_and_reaches_the_settings() -> None:
    settings = gateway_cli._relay_settings(parse("-data-path", "loop"))
    assert settings.loop_relay == "auto"
    assert relaynative.use_native("auto") is relaynative.available()
    assert gateway_cli._relay_settings(parse("-loop-relay", "python")).loop_relay == "python"


def test_c_without_the_built_module_is_one_usage_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relaynative, "_splicerelay", None)
    with pytest.raises(UsageError, match="-loop-relay c: the compiled relay was not built"):
        gateway_cli._relay_settings(parse("-data-path", "loop", "-loop-relay", "c"))
    # auto falls back to the Python pumps; python never needs the module
    assert relaynative.use_native("auto") is False
    assert relaynative.use_native("python") is False
    with pytest.raises(RuntimeError):
        relaynative.use_native("c")


def test_an_unknown_relay_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse("-loop-relay", "asm")
    with pytest.raises(ValueError, match="unknown loop relay"):
        relaynative.use_native("asm")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "-1s", "1e400"])
@pytest.mark.parametrize("flag", ["-idle-timeout", "-hello-timeout"])
def test_durations_that_no_timer_can_hold_are_usage_errors(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare number is seconds, but only a finite, non-negative one (``nan`` had reached the
    relay's timers)."""
    with pytest.raises(SystemExit) as exc:
        parse(f"{flag}={value}")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid duration" in err and "Traceback" not in err


def test_bare_seconds_and_go_durations_still_parse() -> None:
    args = parse("-idle-timeout", "90", "-hello-timeout", "250ms")
    assert (args.idle_timeout, args.hello_timeout) == (90.0, 0.25)
