# -*- test-case-name: tests.unit.http.test_http_fastkv_diff -*-
"""The KV fast path's answer: the request-and-response object the shared HTTP helpers write to,
the response bytes as twisted.web writes them, and the rendering shared by parked reads that one
write woke with the same reply.

:class:`Answer` has the few ``twisted.web`` request methods the helpers of
:mod:`wanfedtx.http.common` call (``getHeader``, ``setHeader``, ``setResponseCode``,
``getClientAddress``); :meth:`Answer.response` lays the status line and headers out as
twisted.web does (``Connection``, ``Server``, ``Date``, then the handler's headers), so both
paths answer with the same bytes (``tests/unit/http/test_http_fastkv_diff.py``).
"""

from __future__ import annotations

import time
from typing import Any, cast

from twisted.web.http import RESPONSES, datetimeToString
from twisted.web.server import version as SERVER_VERSION

from wanfedtx.http.common import IRequest, set_meta
from wanfedtx.http.fastparse import FastRequest
from wanfedtx.http.kv import render_entries, render_raw

_SERVER = b"Server: " + SERVER_VERSION + b"\r\n"
_SPECIAL_CASE = {b"Content-Md5": b"Content-MD5", b"Etag": b"ETag", b"Te": b"TE",
                 b"Www-Authenticate": b"WWW-Authenticate", b"Dnt": b"DNT", b"P3p": b"P3P",
                 b"X-Xss-Protection": b"X-XSS-Protection"}
_names: dict[str, bytes] = {}


def _header_name(name: str) -> bytes:
    """``name`` as twisted.web writes it (Http-Header-Case)."""
    out = _names.get(name)
    if out is None:
        out = b"-".join(w.capitalize() for w in name.encode("iso-8859-1").split(b"-"))
        out = _SPECIAL_CASE.get(out, out)
        if len(_names) < 1000:
            _names[name] = out
    return out


class _DateCache:
    """The ``Date`` header line, formatted once per second."""

    second = -1
    line = b""

    @classmethod
    def get(cls) -> bytes:
        now = time.time()
        second = int(now)
        if second != cls.second:
            cls.line = b"Date: " + datetimeToString(now) + b"\r\n"
            cls.second = second
        return cls.line


class Answer:
    """The request-and-response object the shared helpers (``query_args``, ``set_meta``,
    ``json_reply``, ``error_reply``...) write to: the few ``twisted.web`` request methods they
    call, over a parsed :class:`FastRequest`."""

    __slots__ = ("_peer", "_wanfed_query", "code", "headers", "method", "req", "uri")

    def __init__(self, req: FastRequest, peer: Any) -> None:
        self.req = req
        self.method = req.method
        self.uri = req.uri
        self._wanfed_query = req.query  # what common.query() caches on a request
        self._peer = peer
        self.code = 200
        self.headers: dict[bytes, bytes] = {}

    def getHeader(self, name: str) -> str | None:
        lower = name.lower()
        if lower == "x-consul-token":
            return self.req.token
        if lower == "authorization":
            return self.req.auth
        return None

    def setHeader(self, name: str, value: str) -> None:
        self.headers[_header_name(name)] = b" ".join(value.encode("utf-8").splitlines())

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def getClientAddress(self) -> Any:
        return self._peer

    def response(self, body: bytes) -> bytes:
        """The response bytes as twisted.web writes them."""
        req = self.req
        parts = [
            req.version, b" %d " % self.code, RESPONSES.get(self.code, b"Unknown Status"),
            b"\r\n",
        ]
        if req.close and req.version == b"HTTP/1.1":
            parts.append(b"Connection: close\r\n")
        parts.append(_SERVER)
        parts.append(_DateCache.get())
        for name, value in self.headers.items():
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        parts.append(body)
        return b"".join(parts)


def as_request(answer: Answer) -> IRequest:
    # The shared helpers are annotated with twisted.web's Request; they call only the methods
    # Answer has (tests/unit/http/test_http_fastkv_diff.py compares both paths' bytes).
    return cast(IRequest, answer)


class SharedReadRender:
    """The last rendering of a read's reply, replayed for the other reads that got the same
    reply object: when a write wakes a group of identical parked reads, every member gets one
    reply; the first is rendered (JSON, headers) and the rest get its status, headers and body
    (as :mod:`wanfedtx.http.parking` does for reads parked on the twisted.web path). A read
    answered at once gets a reply of its own, so it is rendered as before."""

    __slots__ = ("body", "code", "headers", "raw", "reply")

    def __init__(self) -> None:
        self.reply: dict[str, Any] | None = None
        self.raw = False
        self.code = 200
        self.headers: dict[bytes, bytes] = {}
        self.body = b""

    def render(self, answer: Answer, reply: dict[str, Any], raw: bool) -> bytes:
        """The body of a ``KVS.Get`` read (``?raw`` or JSON), with its headers set on ``answer``."""
        if reply is self.reply and raw is self.raw:
            answer.code = self.code
            answer.headers.update(self.headers)
            return self.body
        request = as_request(answer)
        before = dict(answer.headers)
        set_meta(request, reply)
        body = (render_raw if raw else render_entries)(request, reply)
        self.reply, self.raw, self.code, self.body = reply, raw, answer.code, body
        self.headers = {k: v for k, v in answer.headers.items() if before.get(k) != v}
        return body
