"""``wanfedtx.jsondecode.loads``: JSON from outside, every failure a ValueError."""

from __future__ import annotations

import pytest

from wanfedtx import jsondecode


def test_decodes_text_and_bytes() -> None:
    assert jsondecode.loads('{"a": [1, 2]}') == {"a": [1, 2]}
    assert jsondecode.loads(b"[true, null]") == [True, None]


@pytest.mark.parametrize(
    "bad",
    [b"[" * 100_000, b'{"a":' * 100_000, "[" * 100_000, b"{not json", b"\xff\xfe\xfd", b""],
)
def test_every_failure_is_a_value_error(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        jsondecode.loads(bad)
