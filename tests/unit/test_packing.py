"""The per-thread reusable msgpack packer gives exactly ``msgpack.packb``'s bytes."""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanfedtx import packing

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text() | st.binary(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(values)
def test_same_bytes_as_packb(value: Any) -> None:
    assert packing.pack(value) == msgpack.packb(value, use_bin_type=True)
    assert packing.pack_without_bin_type(value) == msgpack.packb(value, use_bin_type=False)


def test_usable_after_an_error() -> None:
    with pytest.raises(TypeError):
        packing.pack([1, object()])
    assert packing.pack([1, 2]) == msgpack.packb([1, 2], use_bin_type=True)


def test_a_large_message_drops_the_packer() -> None:
    packing.pack([1])
    kept = packing._per_thread.bin
    assert packing.pack([2]) and packing._per_thread.bin is kept
    big = b"x" * (packing.KEEP_LIMIT + 1)
    assert packing.pack(big) == msgpack.packb(big, use_bin_type=True)
    assert packing._per_thread.bin is None
    assert packing.pack([3]) == msgpack.packb([3], use_bin_type=True)
    assert packing._per_thread.bin is not kept
    assert packing.pack_without_bin_type(big) == msgpack.packb(big, use_bin_type=False)
    assert packing._per_thread.raw is None


def test_each_thread_has_its_own_packer() -> None:
    packing.pack([1])
    here = packing._per_thread.bin
    there: list[Any] = []

    def other() -> None:
        packing.pack([2])
        there.append(packing._per_thread.bin)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert there[0] is not None and there[0] is not here


def test_the_hot_path_encoders_do_not_call_packb(monkeypatch: pytest.MonkeyPatch) -> None:
    """RPC frames, raft messages and log records, FSM commands and gossip messages go through
    the reusable packers: in an agent every ``packb`` is an mmap/munmap pair of its buffer."""
    from wanfedtx.fsm import commands
    from wanfedtx.gossip import wire
    from wanfedtx.raft import messages, storage
    from wanfedtx.rpc import codec

    def refuse(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("msgpack.packb called on a hot path")

    monkeypatch.setattr(msgpack, "packb", refuse)
    assert codec.decode_body(codec.encode_request(1, "KVS.Get", {"Key": "k"})[4:]).seq == 1
    assert codec.decode_body(codec.encode_response(1, None, {"Index": 3})[4:]).reply == {
        "Index": 3}
    entry = messages.Entry(index=2, term=1, data=b"x")
    append = messages.AppendEntries("s1", 1, 1, 1, (entry,), 1, 7)
    assert messages.decode(messages.encode(append)) == append
    assert storage.encode_record([1, 2, b"x"])
    assert commands.decode(commands.encode(0, {"Node": "n"}))[0] == 0
    assert wire.pack({b"Name": b"n"})
