"""The KV fast path's sans-IO parser: never raises, whatever the bytes; a fast request is
recognised whole at every split point (its prefixes are incomplete, what follows it is left in
the buffer); anything outside its shape is handed over."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from wanfedtx.http.fastparse import HANDOVER, MAX_HEAD, FastRequest, parse, request_line_refused

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES") or 300)
CAP = 1000


def _req(head: str, body: bytes = b"") -> bytes:
    return head.encode() + b"\r\n\r\n" + body


FAST = st.sampled_from([
    _req("GET /v1/kv/a HTTP/1.1\r\nHost: x"),
    _req("GET /v1/kv/a/b?raw&stale&token=t HTTP/1.1\r\nX-Consul-Token: s"),
    _req("PUT /v1/kv/k?flags=3 HTTP/1.1\r\nContent-Length: 5", b"hello"),
    _req("PUT /v1/kv/k HTTP/1.0\r\nContent-Length: 0"),
    _req("DELETE /v1/kv/x%20y HTTP/1.1\r\nAuthorization: Bearer t\r\nConnection: close"),
])


@settings(max_examples=EXAMPLES)
@given(st.binary(max_size=300))
def test_any_bytes_never_raise(data: bytes) -> None:
    result = parse(data, CAP)
    assert result is None or result is HANDOVER or isinstance(result, FastRequest)
    request_line_refused(data)


@settings(max_examples=EXAMPLES)
@given(FAST, st.data())
def test_mutated_requests_never_raise(request: bytes, data: st.DataObject) -> None:
    raw = bytearray(request)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    result = parse(bytes(raw), CAP)
    if isinstance(result, FastRequest):
        assert 0 < result.size <= len(raw)
        assert result.key and not result.key.startswith("/")


@settings(max_examples=EXAMPLES)
@given(FAST, st.binary(max_size=50))
def test_fast_request_at_every_split_point(request: bytes, tail: bytes) -> None:
    for n in range(len(request)):
        assert parse(request[:n], CAP) is None
    result = parse(request + tail, CAP)
    assert isinstance(result, FastRequest)
    assert result.size == len(request)


def test_fields() -> None:
    r = parse(_req("PUT /v1/kv/a%2Fb?flags=3&token=q HTTP/1.1\r\nx-consul-token: s\r\n"
                   "X-Consul-Token: t\r\nConnection: keep-alive close\r\nContent-Length: 2",
                   b"hiGET"), CAP)
    assert isinstance(r, FastRequest)
    assert (r.method, r.key, r.version, r.body) == (b"PUT", "a/b", b"HTTP/1.1", b"hi")
    assert r.query == {"flags": ["3"], "token": ["q"]}
    assert r.token == "t" and r.auth is None and r.close  # the last token header, as getHeader
    r = parse(_req("GET /v1/kv/a HTTP/1.0"), CAP)
    assert isinstance(r, FastRequest) and r.close
    r = parse(_req("GET /v1/kv/a HTTP/1.1\r\nConnection: close,keep-alive"), CAP)
    assert isinstance(r, FastRequest) and not r.close  # as twisted.web splits on spaces


def test_handed_over() -> None:
    for head, body in [
        ("GET /v1/kv/a?recurse HTTP/1.1", b""),
        ("GET /v1/kv/a?keys HTTP/1.1", b""),
        ("GET /v1/kv/a?index=3&recurse HTTP/1.1", b""),
        ("PUT /v1/kv/a?cas=1 HTTP/1.1\r\nContent-Length: 0", b""),
        ("PUT /v1/kv/a?acquire=s HTTP/1.1\r\nContent-Length: 0", b""),
        ("DELETE /v1/kv/a?recurse HTTP/1.1", b""),
        ("GET /v1/kv/ HTTP/1.1", b""),
        ("GET /v1/kv//a HTTP/1.1", b""),
        ("GET /v1/kv/a/../b HTTP/1.1", b""),
        ("GET /v1/kv/%ff HTTP/1.1", b""),
        ("GET /v1/kv/a?x=%ff HTTP/1.1", b""),
        ("GET /v1/kv/a?foo HTTP/1.1", b""),
        ("HEAD /v1/kv/a HTTP/1.1", b""),
        ("GET /v1/status/leader HTTP/1.1", b""),
        ("GET /v1/kv/a HTTP/2.0", b""),
        ("GET  /v1/kv/a HTTP/1.1", b""),
        ("GET /v1/kv/a HTTP/1.1\r\nTransfer-Encoding: chunked", b""),
        ("PUT /v1/kv/a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1", b""),
        ("PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1", b"x"),
        ("PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 1001", b""),
        ("PUT /v1/kv/a HTTP/1.1\r\nContent-Length: -1", b""),
        ("GET /v1/kv/a HTTP/1.1\r\nContent-Length: 1", b"x"),
        ("GET /v1/kv/a HTTP/1.1\r\nBad Name: x", b""),
        ("GET /v1/kv/a HTTP/1.1\r\nX: a\r\n b", b""),
        ("GET /v1/kv/a HTTP/1.1\r\nX: \x01", b""),
        ("GET /v1/kv/a HTTP/1.1\r\nX: \xe9", b""),
        ("GET /v1/kv/a HTTP/1.1\r\nX: a\nY: b", b""),
        ("\r\nGET /v1/kv/a HTTP/1.1", b""),
    ]:
        assert parse(head.encode("latin-1") + b"\r\n\r\n" + body, CAP) is HANDOVER, head


def test_incomplete_and_oversized() -> None:
    assert parse(b"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n", CAP) is None
    assert parse(b"PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nab", CAP) is None
    assert parse(b"GET /v1/status/leader HTTP/1.1\r\n", CAP) is HANDOVER  # before the headers
    assert parse(b"GET /v1/kv/a HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, CAP) is HANDOVER
    assert parse(b"G" * (MAX_HEAD + 1), CAP) is HANDOVER
