"""``wanfedtx.jsondecode.loads``: JSON from outside, every failure a ValueError."""

from __future__ import annotations

import pytest

from wanfedtx import jsondecode


def test_decodes_text_and_bytes() -> None:
    assert jsondecode.loads('{"a": [1, 2]}') == {"a": [1, 2]}
    assert jsondecode.loads(b"[true, null]") == [True, None]


@pytest.mark.parametrize(
    "bad",
    [
        b"[" * 100_000, b'{"a":' * 100_000, "[" * 100_000, b"{not json", b"\xff\xfe\xfd", b"",
        b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e309", b"-1e309",
        str(2**64).encode(), str(-(2**63) - 1).encode(),
    ],
)
def test_every_failure_is_a_value_error(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        jsondecode.loads(bad)


def test_too_deep_is_its_own_value_error() -> None:
    with pytest.raises(jsondecode.TooDeep):
        jsondecode.loads(b"[" * 100_000)


def test_numbers_at_the_64_bit_bounds_and_finite_floats_decode() -> None:
    assert jsondecode.loads(f"[{2**64 - 1}, {-(2**63)}, 1e308, -2.5e-300]") == [
        2**64 - 1, -(2**63), 1e308, -2.5e-300]


def test_lone_surrogates_become_u_fffd_as_in_go() -> None:
    text = r'{"\ud800k": ["a\udfffb", "\ud83d\ude00", "\\ud800"]}'
    assert jsondecode.loads(text) == {"\ufffdk": ["a\ufffdb", "\U0001f600", "\\ud800"]}
    assert jsondecode.loads(b'["\xed\xa0\x80"]') == ["\ufffd"]  # a surrogate in UTF-8 bytes
