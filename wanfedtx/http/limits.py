# -*- test-case-name: tests.unit.http.test_http_limits_channel,tests.security -*-
"""Bounds of the HTTP API: request body caps per route, connections per client, header deadline.

Sans-IO: :class:`HTTPLimits` holds the numbers (from the agent's ``limits`` config block) and
:meth:`HTTPLimits.body_cap` maps a request line (method + path, known once the headers are in)
to the largest body that route accepts and the one-line 413 text (Consul's wording, with the
config key that raises the cap as the reference instead of a web link):

* ``PUT /v1/kv/<key>``: ``limits.kv_max_value_size`` (512 KiB, as Consul);
* ``/v1/txn``: max(``limits.txn_max_req_len``, ``limits.kv_max_value_size``) (as Consul);
* ``PUT /v1/snapshot`` (a restore): ``limits.raft_max_entry_size`` (the archive is written as
  one raft entry);
* catalog register/deregister, agent service/check register and check update:
  ``limits.http_max_request_body`` (1 MiB);
* every other route (none of them reads a body): 64 KiB.

The channel that enforces the caps and the header deadline is :mod:`wanfedtx.http.channel`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from wanfedtx.config.runtime import RuntimeConfig

KV_MAX_VALUE_SIZE = 512 * 1024
TXN_MAX_REQ_LEN = 512 * 1024
MAX_REQUEST_BODY = 1024 * 1024
OTHER_MAX_BODY = 64 * 1024
SNAPSHOT_MAX_BODY = 4 * 1024 * 1024
MAX_CONNS_PER_CLIENT = 200
READ_HEADER_TIMEOUT = 10.0

# Routes whose JSON bodies are registrations (Consul: node + services + checks in one body).
_REGISTRATION = re.compile(
    rb"/v1/(catalog/(register|deregister)|agent/(service|check)/register|agent/check/update/.*)"
)


@attrs.frozen
class BodyCap:
    """The largest body of one route and the config key an operator raises it with."""

    limit: int
    key: str

    def too_large(self, size: int | None) -> str:
        """Consul's 413 line; ``size`` is None when the body is chunked (its size unknown)."""
        if size is None:
            return f"Request body too large, max size: {self.limit} bytes. See {self.key}."
        return (
            f"Request body({size} bytes) too large, max size: {self.limit} bytes. "
            f"See {self.key}."
        )


@attrs.frozen
class HTTPLimits:
    """The HTTP API's bounds (``limits.*`` config keys; 0 connections per client = no limit)."""

    kv_max_value_size: int = KV_MAX_VALUE_SIZE
    txn_max_req_len: int = TXN_MAX_REQ_LEN
    max_request_body: int = MAX_REQUEST_BODY
    other_max_body: int = OTHER_MAX_BODY
    snapshot_max_body: int = SNAPSHOT_MAX_BODY
    max_conns_per_client: int = MAX_CONNS_PER_CLIENT
    read_header_timeout: float = READ_HEADER_TIMEOUT

    def body_cap(self, method: bytes, uri: bytes) -> BodyCap:
        """The body cap of the route ``method uri`` (query string ignored)."""
        path = uri.partition(b"?")[0]
        if method not in (b"PUT", b"POST"):
            return BodyCap(self.other_max_body, "docs/security.md")
        if path.startswith(b"/v1/kv/"):
            return BodyCap(self.kv_max_value_size, "limits.kv_max_value_size")
        if path == b"/v1/txn":
            return BodyCap(max(self.txn_max_req_len, self.kv_max_value_size),
                           "limits.txn_max_req_len")
        if path == b"/v1/snapshot":
            return BodyCap(self.snapshot_max_body, "limits.raft_max_entry_size")
        if _REGISTRATION.fullmatch(path):
            return BodyCap(self.max_request_body, "limits.http_max_request_body")
        return BodyCap(self.other_max_body, "docs/security.md")


def http_limits(rt: RuntimeConfig) -> HTTPLimits:
    """The HTTP bounds an agent's runtime config asks for."""
    return HTTPLimits(
        kv_max_value_size=rt.kv_max_value_size,
        txn_max_req_len=rt.txn_max_req_len,
        max_request_body=rt.http_max_request_body,
        snapshot_max_body=rt.raft_max_entry_size,
        max_conns_per_client=rt.http_max_conns_per_client,
        read_header_timeout=rt.http_read_header_timeout,
    )
