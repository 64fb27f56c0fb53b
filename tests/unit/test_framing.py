"""wanfedtx.framing: the shared length-prefixed decoder (feed -> frames, errors as values)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from wanfedtx.framebudget import FrameBudget
from wanfedtx.framing import LengthPrefixedDecoder, length_prefixed


class Bad(Exception):
    pass


class Upper(LengthPrefixedDecoder[bytes]):
    """Bodies upper-cased; a body starting with ``!`` is malformed."""

    errors = (Bad,)

    def decode(self, body: bytes) -> bytes:
        if body.startswith(b"!"):
            raise Bad("malformed body")
        return body.upper()

    def bad_length(self, size: int) -> Exception:
        return Bad(f"length {size}")

    def over_budget(self, partial: int, budget: FrameBudget) -> Exception:
        return Bad(f"partial {partial} over {budget.used}/{budget.limit}")


def test_frames_before_an_error_are_returned_and_nothing_after() -> None:
    d = Upper(100)
    data = length_prefixed(b"a") + length_prefixed(b"!x") + length_prefixed(b"b")
    assert d.feed(data) == [b"A"]
    assert isinstance(d.failed, Bad) and str(d.failed) == "malformed body"
    assert d.feed(length_prefixed(b"c")) == [] and d.buffered == 0


def test_length_refused_at_the_header() -> None:
    d = Upper(10, min_frame=1)
    assert d.feed(struct.pack(">I", 11)) == [] and str(d.failed) == "length 11"
    z = Upper(10, min_frame=1)
    assert z.feed(struct.pack(">I", 0)) == [] and str(z.failed) == "length 0"
    ok = Upper(10)
    assert ok.feed(struct.pack(">I", 0)) == [b""] and ok.failed is None


def test_budget_reserved_released_and_refused() -> None:
    budget = FrameBudget(10)
    a, b = Upper(100, budget), Upper(100, budget)
    assert a.feed(struct.pack(">I", 8) + b"abcd") == [] and budget.used == 8
    assert b.feed(struct.pack(">I", 8) + b"ab") == []
    assert str(b.failed) == "partial 6 over 8/10" and budget.used == 8
    assert a.feed(b"efgh") == [b"ABCDEFGH"] and budget.used == 0
    a.close()
    assert budget.used == 0


def test_awaiting_header_and_completed() -> None:
    d = Upper(100)
    assert d.awaiting_header
    d.feed(b"\x00\x00")
    assert d.awaiting_header
    d.feed(b"\x00\x02a")
    assert not d.awaiting_header and d.completed == 0
    assert d.feed(b"b") == [b"AB"] and d.awaiting_header and d.completed == 1


@given(st.lists(st.binary(max_size=40).filter(lambda b: not b.startswith(b"!")), max_size=8),
       st.lists(st.integers(1, 17), min_size=1))
def test_any_chunking_gives_the_same_frames(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(length_prefixed(b) for b in bodies)
    budget = FrameBudget(1 << 20)
    d = Upper(64, budget)
    got: list[bytes] = []
    i = k = 0
    while i < len(stream):
        got += d.feed(stream[i : i + cuts[k % len(cuts)]])
        i += cuts[k % len(cuts)]
        k += 1
    assert got == [b.upper() for b in bodies]
    assert d.failed is None and d.buffered == 0 and budget.used == 0


@given(st.binary(max_size=300), st.integers(0, 64))
def test_random_bytes_never_raise(data: bytes, limit: int) -> None:
    budget = FrameBudget(32)
    d = Upper(limit, budget)
    frames = d.feed(data)
    assert all(len(f) <= limit for f in frames)
    assert d.failed is None or isinstance(d.failed, Bad)
    assert budget.used == d.buffered <= 32
