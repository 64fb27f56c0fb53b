"""``docs/cli-reference.md`` is what ``python -m wanfedtx.cli.reference`` generates today."""

from __future__ import annotations

from pathlib import Path

from wanfedtx.cli.main import COMMANDS
from wanfedtx.cli.reference import render

REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "cli-reference.md"


def test_reference_file_matches_the_parsers() -> None:
    assert REFERENCE.read_text() == render(), (
        "docs/cli-reference.md is stale: python -m wanfedtx.cli.reference > docs/cli-reference.md"
    )


def test_every_command_has_a_section() -> None:
    text = render()
    for name in COMMANDS:
        assert f"## `wanfed {name}`\n" in text
    assert "## `wanfed kv put`\n" in text  # nested subcommands too
