# -*- test-case-name: tests.security.test_security_misc_gateway_logs -*-
"""Log lines of the gateway's relay paths: per-connection lines at DEBUG, peer-caused ones bounded.

The gateway's listener is open to anyone who can reach it, and nothing before the ClientHello is
authenticated. Every line a connection can cause (a bad ClientHello, no hello before the
deadline, an SNI no filter chain matches, an SNI without a cluster, the connection limit, an
upstream that cannot be reached for it) goes through one ``RateLimitedLog`` per listener with the
peer address and the cause, so 20,000 bad connections write a few dozen lines, not megabytes.
Lines about ordinary connections (idle close, closing on stop) are DEBUG.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wanfedtx.ratelog import RateLimitedLog

log = Logger(namespace="wanfed.gateway")

BAD_HELLO = "bad-hello"
HELLO_TIMEOUT = "hello-timeout"
UNKNOWN_SNI = "unknown-sni"
NO_ROUTE = "no-route"
NO_ENDPOINT = "no-endpoint"
UPSTREAM_CONNECT = "upstream-connect"
CONNECTION_LIMIT = "connection-limit"

MSG_BAD_HELLO = "gateway closed {peer}: bad ClientHello: {cause}"
MSG_HELLO_TIMEOUT = "gateway closed {peer}: no complete ClientHello within {timeout}s"
MSG_UNKNOWN_SNI = "gateway closed {peer}: no filter chain matches SNI {sni!r}"
MSG_NO_ROUTE = "gateway closed {peer}: no cluster for SNI {sni!r}"
MSG_NO_ENDPOINT = "gateway closed {peer}: no healthy endpoint left in cluster {cluster}"
MSG_UPSTREAM_CONNECT = "gateway connect to {address}:{port} of {cluster} for {peer} failed: {why}"
MSG_CONNECTION_LIMIT = "gateway connection limit ({limit}) reached; closing {peer}"
MSG_IDLE = "gateway closed idle connection {peer}"


def peer_log(clock: IReactorTime) -> RateLimitedLog:
    """The rate-limited log of one listener (first 10 lines per reason per 10 s, then a count)."""
    return RateLimitedLog(log, clock)
