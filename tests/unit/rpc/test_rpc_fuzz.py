"""Hypothesis fuzzing of the sniffer (through the port, with real OpenSSL) and of the RPC codec.

Property: no exception escapes; a connection the port or the RPC server closes was closed with a
log line; one still open is waiting inside a handler or a handshake, and the handshake timeout
closes the latter. ``WANFED_FUZZ_EXAMPLES`` sets the example count (default 300); for 10000 run
``WANFED_FUZZ_EXAMPLES=10000 pytest tests/unit/rpc/test_rpc_fuzz.py -o timeout=3000``.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rpc_support import Link, Recorder, server_tls
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory

from wanfedtx.metrics import Registry
from wanfedtx.rpc.codec import FrameDecoder, Request, Response, encode_request, encode_response
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.endpoints import default_endpoints
from wanfedtx.rpc.errors import FrameError
from wanfedtx.rpc.protocol import RPCHandler, RPCServerProtocol
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory
from wanfedtx.testing.pki import PKI

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_CA = PKI()
_TLS = server_tls(_CA, "primary", "pri")
_CLIENT_TLS = server_tls(_CA, "secondary", "sec")


def _client_hello() -> bytes:
    clock = Clock()
    f = TLSMemoryBIOFactory(_CLIENT_TLS.outgoing_alpn_creator("primary", "pri",
                                                              "consul/rpc-multi"),
                            True, Factory(), clock=clock)
    p = f.protocol(f, Recorder())
    t = StringTransport()
    p.makeConnection(t)
    return t.value()


HELLO = _client_hello()
FRAME = encode_request(1, "Status.Ping", None)


class Errors:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, e: dict[str, Any]) -> None:
        if e.get("log_level") in (LogLevel.error, LogLevel.warn):
            self.events.append(e)


def mutate(base: bytes) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        b = bytearray(base)
        for _ in range(draw(st.integers(0, 8))):
            if not b:
                break
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(b)))
        return bytes(b[:cut]) + draw(st.binary(max_size=64))
    return build()


port_inputs = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda t, rest: bytes([t]) + rest, st.integers(0, 255), st.binary(max_size=256)),
    mutate(HELLO),
    st.builds(lambda t, h: bytes([t]) + h, st.sampled_from([3, 7]), mutate(HELLO)),
    st.builds(lambda t, f: bytes([t]) + f, st.sampled_from([0, 4]), mutate(FRAME * 3)),
)


@FUZZ
@given(data=port_inputs, chunk=st.integers(1, 600), verify_incoming=st.booleans())
def test_fuzz_port(data: bytes, chunk: int, verify_incoming: bool) -> None:
    clock = Clock()
    reg = HandlerRegistry()
    reg.register(RPCType.CONSUL, RPCHandler(default_endpoints(), multi=False))
    reg.register(RPCType.MULTIPLEX_V2, RPCHandler(default_endpoints(), multi=True))
    tls = server_tls(_CA, "primary", "pri", verify_incoming=verify_incoming)
    tls.incoming_alpn_creator = _cached_alpn  # type: ignore[method-assign]
    f = RPCPortFactory(reg, clock, tls, metrics=Registry())
    errors = Errors()
    globalLogPublisher.addObserver(errors)
    try:
        link = Link(f.buildProtocol(None), Recorder(), clock, chunk=chunk)
        link.ct.write(data)
        link.pump()
        if not link.st.disconnecting:
            clock.advance(5.0)  # the handshake timeout, if still sniffing or handshaking
            link.pump()
        if link.st.disconnecting:
            assert errors.events, "closed without a log line"
        else:
            # still open: only when a handler has taken over and waits for a complete frame
            proto = link.server
            assert proto._stage == "handler", proto._stage  # type: ignore[attr-defined]
    finally:
        globalLogPublisher.removeObserver(errors)


_ALPN_CREATOR = _TLS.incoming_alpn_creator(
    ("consul/rpc-single", "consul/raft", "consul/rpc-multi"))


def _cached_alpn(protocols: Any) -> Any:
    return _ALPN_CREATOR


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20)
    | st.binary(max_size=20) | st.floats(allow_nan=False),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=5), c, max_size=5),
    max_leaves=10)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    obj = draw(VALUES)
    kind = draw(st.sampled_from(["req", "resp", "raw", "oversize", "mut"]))
    if kind == "req":
        return encode_request(draw(st.integers(0, 2**64 - 1)), draw(st.text(max_size=30)), obj)
    if kind == "resp":
        return encode_response(draw(st.integers(0, 2**64 - 1)),
                               draw(st.none() | st.text(max_size=10)), obj)
    if kind == "raw":
        body = msgpack.packb(obj)
        return struct.pack(">I", len(body)) + body
    if kind == "oversize":
        return struct.pack(">I", draw(st.integers(4096 + 1, 2**32 - 1))) + b"\x94"
    return draw(mutate(encode_request(1, "Status.Ping", obj)))


@FUZZ
@given(parts=st.lists(frames() | st.binary(max_size=64), max_size=6), chunk=st.integers(1, 64))
def test_fuzz_codec(parts: list[bytes], chunk: int) -> None:
    stream = b"".join(parts)
    dec = FrameDecoder(max_frame_size=4096)
    for i in range(0, len(stream), chunk):
        dec.feed(stream[i : i + chunk])
    assert dec.failed is None or isinstance(dec.failed, FrameError)
    # the same bytes into a server: answered, waiting, or closed with a log line
    errors = Errors()
    globalLogPublisher.addObserver(errors)
    try:
        server = RPCServerProtocol(default_endpoints(), multi=True, max_frame_size=4096)
        t = StringTransport()
        server.makeConnection(t)
        for i in range(0, len(stream), chunk):
            server.dataReceived(stream[i : i + chunk])
        if t.disconnecting:
            assert [e for e in errors.events if e.get("log_format") == "RPC error"]
    finally:
        globalLogPublisher.removeObserver(errors)


_messages = st.builds(Request, st.integers(0, 2**64 - 1), st.text(max_size=30), VALUES) | st.builds(
    Response, st.integers(0, 2**64 - 1), st.none() | st.text(max_size=10), VALUES)


@FUZZ
@given(msgs=st.lists(_messages, max_size=6), chunk=st.integers(1, 64))
def test_codec_decode_of_encode_is_identity(msgs: list[Request | Response], chunk: int) -> None:
    """Frames the encoder writes come back as the same messages, whatever the chunking."""
    stream = b"".join(
        encode_request(m.seq, m.method, m.args) if isinstance(m, Request)
        else encode_response(m.seq, m.error, m.reply)
        for m in msgs
    )
    dec = FrameDecoder(max_frame_size=1 << 20)
    got: list[object] = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i : i + chunk])
    assert dec.failed is None
    assert got == msgs
