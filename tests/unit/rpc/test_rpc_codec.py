"""RPC frame codec and endpoint table."""

from __future__ import annotations

import struct

import msgpack
import pytest

from wanfedtx.rpc.codec import (
    FrameDecoder,
    Request,
    Response,
    decode_body,
    encode_request,
    encode_response,
)
from wanfedtx.rpc.endpoints import EndpointNotFound, Endpoints, default_endpoints
from wanfedtx.rpc.errors import DuplicateRegistration, FrameError


def test_request_bytes_exactly() -> None:
    frame = encode_request(1, "Status.Ping", None)
    body = b"\x94\x00\x01\xabStatus.Ping\xc0"
    assert frame == struct.pack(">I", len(body)) + body


def test_response_bytes_exactly() -> None:
    assert encode_response(1, None, None) == b"\x00\x00\x00\x05\x94\x01\x01\xc0\xc0"
    assert encode_response(2, "boom", None)[4:] == b"\x94\x01\x02\xa4boom\xc0"


def test_roundtrip_in_any_chunking() -> None:
    frames = encode_request(7, "KV.Get", {"Key": "a", "n": [1, 2]}) + encode_response(
        7, None, {"Value": b"\x00\xff"})
    for step in (1, 3, len(frames)):
        dec = FrameDecoder()
        out = []
        for i in range(0, len(frames), step):
            out += dec.feed(frames[i : i + step])
        assert out == [Request(7, "KV.Get", {"Key": "a", "n": [1, 2]}),
                       Response(7, None, {"Value": b"\x00\xff"})]
        assert dec.buffered == 0


def test_oversized_frame_refused_from_header_alone() -> None:
    dec = FrameDecoder(max_frame_size=100)
    assert dec.feed(struct.pack(">I", 101)) == []
    assert isinstance(dec.failed, FrameError)
    assert "exceeds the maximum of 100 bytes" in str(dec.failed)
    assert dec.feed(encode_request(1, "A.B", {})) == []  # nothing after a bad frame
    with pytest.raises(FrameError):
        encode_request(1, "A.B", b"x" * 200, max_frame_size=100)


@pytest.mark.parametrize("body", [
    msgpack.packb([0, 1, "A.B"]),            # 3 elements
    msgpack.packb({"seq": 1}),               # not an array
    msgpack.packb([2, 1, "A.B", None]),      # unknown kind
    msgpack.packb([0, -1, "A.B", None]),     # negative seq
    msgpack.packb([0, 1, 5, None]),          # method not a string
    msgpack.packb([1, 1, 5, None]),          # error neither nil nor string
    msgpack.packb([True, 1, "A.B", None]),   # bool is not a kind
    b"\xc1",                                 # never-used msgpack byte
    b"\x94\x00",                             # truncated
    msgpack.packb([0, 1, "A.B", None]) + b"\x00",  # trailing bytes
])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(FrameError):
        decode_body(body)


def test_endpoint_errors_are_net_rpc_wording() -> None:
    e = default_endpoints()
    assert e.lookup("Status.Ping")(None) is None
    with pytest.raises(EndpointNotFound, match=r"^rpc: can't find service Foo\.Ping$"):
        e.lookup("Foo.Ping")
    with pytest.raises(EndpointNotFound, match=r"^rpc: can't find method Status\.Pong$"):
        e.lookup("Status.Pong")
    with pytest.raises(EndpointNotFound, match=r"^rpc: service/method request ill-formed: x$"):
        e.lookup("x")
    with pytest.raises(DuplicateRegistration):
        e.register("Status.Ping", lambda a: None)
    with pytest.raises(ValueError):
        Endpoints().register("NoDot", lambda a: None)
    assert e.names() == ["Status.Ping"]
