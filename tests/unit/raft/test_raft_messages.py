"""Raft message encoding: round trips; a fuzzed decoder only ever raises MessageDecodeError."""

from __future__ import annotations

import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wanfedtx.raft import messages as m
from wanfedtx.raft.errors import MessageDecodeError

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "300"))

ids = st.text(min_size=1, max_size=8)
u64 = st.integers(0, 2**64 - 1)
entries = st.integers(0, 2**40).flatmap(lambda start: st.lists(
    st.tuples(u64, st.sampled_from([0, 1, 2]), st.binary(max_size=20)), max_size=5).map(
    lambda xs: tuple(m.Entry(start + 1 + i, t, k, d) for i, (t, k, d) in enumerate(xs)))
    .map(lambda es: (start, es)))

messages = st.one_of(
    st.builds(m.RequestVote, ids, u64, u64, u64, st.booleans(), st.booleans()),
    st.builds(m.RequestVoteResponse, ids, u64, st.booleans(), st.booleans()),
    st.builds(lambda src, term, pe, pt, c, s: m.AppendEntries(src, term, pe[0], pt, pe[1], c, s),
              ids, u64, entries, u64, u64, u64),
    st.builds(m.AppendEntriesResponse, ids, u64, st.booleans(), u64, u64, u64),
    st.builds(m.InstallSnapshot, ids, u64, u64, u64, st.lists(ids, max_size=3).map(tuple), u64,
              st.binary(max_size=50), st.booleans(), u64),
    st.builds(m.InstallSnapshotResponse, ids, u64, u64, u64, st.booleans(), u64),
    st.builds(m.TimeoutNow, ids, u64),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(messages)
def test_round_trip(msg: m.Message) -> None:
    assert m.decode(m.encode(msg)) == msg


@settings(max_examples=EXAMPLES, deadline=None)
@given(messages, st.data())
def test_mutated_bytes_decode_or_raise_clearly(msg: m.Message, data: st.DataObject) -> None:
    raw = bytearray(m.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[data.draw(st.integers(0, len(raw))):]
        else:
            raw.insert(data.draw(st.integers(0, len(raw))), data.draw(st.integers(0, 255)))
    try:
        out = m.decode(bytes(raw))
    except MessageDecodeError as e:
        assert str(e)
        return
    assert m.decode(m.encode(out)) == out  # anything accepted is a well-formed message


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text()
                    | st.binary() | st.floats(), lambda c: st.lists(c, max_size=10)
                    | st.dictionaries(st.text(), c, max_size=4), max_leaves=30))
def test_arbitrary_msgpack_values(obj: object) -> None:
    raw = msgpack.packb(obj)
    try:
        m.decode(raw)
    except MessageDecodeError:
        pass


@pytest.mark.parametrize("raw, why", [
    (b"", "not valid msgpack"),
    (msgpack.packb([99]), "unknown raft message type"),
    (msgpack.packb([7, "a"]), "TimeoutNow must have 2 fields"),
    (msgpack.packb([7, "a", -1]), "'term' must be an unsigned integer"),
    (msgpack.packb([7, "", 1]), "'src' must be a non-empty string"),
    (msgpack.packb([3, "a", 1, 5, 1, [[7, 1, 0, b""]], 0, 0]), "prev_index \\+ 1"),
    (msgpack.packb([3, "a", 1, 5, 1, [[6, 1, 9, b""]], 0, 0]), "unknown kind 9"),
    (msgpack.packb({"a": 1}), "non-empty msgpack array"),
])
def test_clear_errors(raw: bytes, why: str) -> None:
    with pytest.raises(MessageDecodeError, match=why):
        m.decode(raw)
