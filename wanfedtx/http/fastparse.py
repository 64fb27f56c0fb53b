# -*- test-case-name: tests.unit.http.test_http_fastkv_parse -*-
"""Sans-IO request parser of the KV fast path: bytes in, one request (or a verdict) out.

:func:`parse` looks at the start of a connection's buffer and answers one of:

* ``None``: the request is not complete yet (headers or body still to come);
* :data:`HANDOVER`: the fast path does not serve this request. Everything it is not sure about
  lands here: another method, path or query parameter, HTTP/0.9 or 2, chunked bodies,
  ``Expect``, ``Upgrade``, obsolete line folding, bytes outside printable ASCII, bodies over the
  route's cap, malformed input of every kind. The connection is then handed, with the bytes
  still buffered, to the twisted.web channel, which answers exactly as it always has (a 400, a
  413, a redirect, the whole API);
* a :class:`FastRequest`: a ``GET``, ``PUT`` or ``DELETE`` of one key under ``/v1/kv/`` whose
  request line, headers, query and body are all of the simple shape the fast path implements,
  with ``size`` the number of bytes it takes in the buffer.

The parser is deliberately stricter than HTTP/1.1 (and than twisted.web): what it accepts,
twisted.web parses to the same method, target, version, header values and body, so both paths
give the same answer (``tests/unit/http/test_http_fastkv_diff.py`` checks that over random
requests). It never raises on any input.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, unquote_to_bytes

MAX_HEAD: Final = 8192
"""Longest request line + headers the fast path reads; longer heads are handed over."""

MAX_HEADERS: Final = 64
"""Most header lines the fast path accepts; more are handed over."""


class _Handover:
    __slots__ = ()

    def __repr__(self) -> str:
        return "HANDOVER"


HANDOVER: Final = _Handover()
"""The verdict for a request the fast path leaves to the twisted.web channel."""

# Query parameters served by the fast path, per method (any other one: hand over).
ALLOWED: Final[dict[bytes, frozenset[str]]] = {
    b"GET": frozenset({"token", "stale", "consistent", "raw", "dc", "index", "wait"}),
    b"PUT": frozenset({"token", "flags", "dc"}),
    b"DELETE": frozenset({"token", "dc"}),
}

_TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VCHAR: Final = bytes(range(0x21, 0x7F))
_VALUE: Final = _VCHAR + b" \t"
_PREFIX: Final = b"/v1/kv/"
_VERSIONS: Final = (b"HTTP/1.1", b"HTTP/1.0")
_REFUSED_HEADERS: Final = frozenset(
    {b"transfer-encoding", b"expect", b"upgrade", b"http2-settings", b"trailer", b"te"}
)


class FastRequest:
    """One request the fast path serves (the parser's output)."""

    __slots__ = (
        "auth",
        "body",
        "close",
        "key",
        "method",
        "query",
        "size",
        "token",
        "uri",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        uri: bytes,
        version: bytes,
        key: str,
        query: dict[str, list[str]],
        *,
        token: str | None,
        auth: str | None,
        close: bool,
        body: bytes,
        size: int,
    ) -> None:
        self.method = method
        self.uri = uri
        self.version = version
        #: the key, percent-decoded (as the route's ``<path:key>`` gives it)
        self.key = key
        #: the query string as ``wanfedtx.http.common.query`` parses it
        self.query = query
        #: the last ``X-Consul-Token`` and ``Authorization`` header values (as ``getHeader``)
        self.token = token
        self.auth = auth
        #: the connection closes after the answer (HTTP/1.0, or ``Connection: close``)
        self.close = close
        self.body = body
        #: bytes of the buffer this request takes (head, blank line and body)
        self.size = size


def request_line_refused(buf: bytes) -> bool:
    """True if the request line, once complete in ``buf``, already rules the fast path out
    (so the twisted.web channel takes the connection before the headers are in)."""
    end = buf.find(b"\r\n")
    if end < 0:
        return len(buf) > MAX_HEAD
    return _target(buf[:end]) is None


def _target(line: bytes) -> tuple[bytes, bytes, bytes] | None:
    parts = line.split(b" ")
    if len(parts) != 3:
        return None
    method, uri, version = parts
    if method not in ALLOWED or version not in _VERSIONS or not uri.startswith(_PREFIX):
        return None
    if uri.translate(None, _VCHAR) or b"#" in uri:
        return None
    return method, uri, version


def parse(buf: bytes, kv_max_value_size: int) -> FastRequest | _Handover | None:
    """The first request in ``buf`` (see the module docstring); never raises."""
    head = parse_head(buf, kv_max_value_size)
    if not isinstance(head, tuple):
        return head
    req, start = head
    if len(buf) < req.size:
        return None
    req.body = bytes(buf[start:req.size])
    return req


def parse_head(
    buf: bytes, kv_max_value_size: int
) -> tuple[FastRequest, int] | _Handover | None:
    """As :func:`parse`, once the head is in: the request (its ``body`` still empty, ``size``
    where it ends) and the offset of its body, whether or not the body is in ``buf`` yet. A
    connection keeps this and waits for ``size`` bytes instead of parsing again. Only the first
    ``MAX_HEAD + 4`` bytes of ``buf`` are looked at."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return HANDOVER if len(buf) > MAX_HEAD or request_line_refused(buf) else None
    if end > MAX_HEAD:
        return HANDOVER
    head = buf[:end]
    lines = head.split(b"\r\n")
    if head.count(b"\n") != len(lines) - 1 or head.count(b"\r") != len(lines) - 1:
        return HANDOVER  # bare CR or LF
    if len(lines) > MAX_HEADERS + 1:
        return HANDOVER
    target = _target(lines[0])
    if target is None:
        return HANDOVER
    method, uri, version = target
    length: int | None = None
    token: str | None = None
    auth: str | None = None
    connection: bytes | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TCHAR):
            return HANDOVER
        value = value.strip(b" \t")
        if value.translate(None, _VALUE):
            return HANDOVER
        lower = name.lower()
        if lower == b"content-length":
            if length is not None or not value.isdigit() or len(value) > 12:
                return HANDOVER
            length = int(value)
        elif lower in _REFUSED_HEADERS:
            return HANDOVER
        elif lower == b"x-consul-token":
            token = value.decode("ascii")
        elif lower == b"authorization":
            auth = value.decode("ascii")
        elif lower == b"connection" and connection is None:
            connection = value
    request = _route(method, uri, kv_max_value_size, length)
    if request is None:
        return HANDOVER
    key, query = request
    start = end + 4
    stop = start + (length or 0)
    # As twisted.web: HTTP/1.1 persists unless the first Connection header's space-separated
    # words include "close"; HTTP/1.0 never persists.
    close = version != b"HTTP/1.1" or (
        connection is not None and b"close" in connection.lower().split(b" ")
    )
    return FastRequest(
        method, uri, version, key, query,
        token=token, auth=auth, close=close, body=b"", size=stop,
    ), start


def _route(
    method: bytes, uri: bytes, cap: int, length: int | None
) -> tuple[str, dict[str, list[str]]] | None:
    """The key and query of a request the fast path serves, None for any other."""
    if length:
        if method != b"PUT" or length > cap:
            return None  # bodies of GET/DELETE and over the cap: the channel's rules
    path, _, qs = uri.partition(b"?")
    try:
        key = unquote_to_bytes(path[len(_PREFIX):]).decode("utf-8")
        pairs = parse_qsl(qs.decode("ascii"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    if not _plain_key(key):
        return None
    allowed = ALLOWED[method]
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in allowed:
            return None
        query.setdefault(name, []).append(value)
    return key, query


def _plain_key(key: str) -> bool:
    """A key the route's ``<path:key>`` matches unchanged: not empty, no empty, ``.`` or ``..``
    segment, no control characters."""
    if not key or key[0] == "/" or "//" in key or not key.isprintable():
        return False
    return not any(seg in (".", "..") for seg in key.split("/"))
