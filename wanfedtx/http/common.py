# -*- test-case-name: tests.unit.http,tests.integration.http -*-
"""Shared plumbing of the /v1 HTTP handlers: query options, tokens, headers, JSON, errors.

Handlers build RPC requests with :func:`query_args` / :func:`write_args`, call the RPC endpoint
through :class:`APIContext.rpc`, and return through :func:`json_reply`, which sets
``X-Consul-Index``, ``X-Consul-KnownLeader`` and ``X-Consul-LastContact`` as the reference does.
Errors raised as :class:`HTTPError` (or the endpoint errors) become one-line text bodies with the
reference's status codes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import Request as IRequest

__all__ = ["IRequest"]

from wanfedtx import jsondecode
from wanfedtx.acl.model import ACLError
from wanfedtx.acl.rules import RulesError
from wanfedtx.catalog.errors import (
    BadRequestError,
    EndpointError,
    NoLeaderError,
    NoPathToDatacenterError,
    NotFoundError,
)
from wanfedtx.config.durations import parse_duration as go_duration
from wanfedtx.fsm.errors import LeadershipError
from wanfedtx.http.limits import KV_MAX_VALUE_SIZE
from wanfedtx.rpc.errors import RPCLayerError
from wanfedtx.state.errors import StateError

log = Logger()

Args = dict[str, Any]
RPC = Callable[[str, Args], Deferred[Any]]

RPC_RATE_EXCEEDED = "RPC rate limit exceeded"
"""Consul's ``ErrRPCRateExceeded`` text (a client agent's ``limits.rpc_rate``): answered 429."""

MAX_JSON_DEPTH = 64
"""Deepest JSON nesting a request body may have (Consul's bodies nest a handful of levels)."""


class HTTPError(Exception):
    """An HTTP failure with a status code and a one-line message."""

    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


@attrs.define
class APIContext:
    """What the /v1 handlers need from the agent."""

    datacenter: str
    rpc: RPC
    kv_max_value_size: int = KV_MAX_VALUE_SIZE
    #: ``acl.tokens.default``: the token of requests that carry none
    default_token: str = ""


# -- request parsing -------------------------------------------------------------------------


def query(request: IRequest) -> dict[str, list[str]]:
    """The query string, bare flags (``?recurse``) included.

    Twisted's ``request.args`` drops parameters without ``=``, which Consul's clients send.
    """
    cached: dict[str, list[str]] | None = getattr(request, "_wanfed_query", None)
    if cached is not None:
        return cached
    _, _, qs = request.uri.partition(b"?")
    out: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(qs.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise HTTPError(400, "Invalid query string: not valid UTF-8") from None
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    request._wanfed_query = out  # type: ignore[attr-defined]
    return out


def arg(request: IRequest, name: str) -> str | None:
    values = query(request).get(name)
    return values[0] if values else None


def args_list(request: IRequest, name: str) -> list[str]:
    return list(query(request).get(name, []))


def has_arg(request: IRequest, name: str) -> bool:
    return name in query(request)


def bool_arg(request: IRequest, name: str) -> bool:
    """``?name`` or ``?name=true`` is true; ``?name=false`` is false; absent is false."""
    if not has_arg(request, name):
        return False
    value = (arg(request, name) or "").lower()
    if value in ("", "1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise HTTPError(400, f"Invalid value for ?{name}: {value!r} (use true or false)")


def parse_duration(text: str) -> float:
    """A Go duration string ("10s", "1m30s", "250ms") in seconds; "" and "0" are 0. Raises
    ``ValueError`` (``DurationError``) with Go's text for anything else."""
    if text in ("0", ""):
        return 0.0
    return go_duration(text)


def token(request: IRequest) -> str:
    """The ACL token from ?token, X-Consul-Token or ``Authorization: Bearer``."""
    t = arg(request, "token")
    if t:
        return t
    header = request.getHeader("X-Consul-Token")
    if header:
        return str(header)
    auth = request.getHeader("Authorization")
    if auth and auth.startswith("Bearer "):
        return str(auth[len("Bearer ") :].strip())
    return ""


def datacenter(request: IRequest, ctx: APIContext) -> str:
    return arg(request, "dc") or ctx.datacenter


def query_args(request: IRequest, ctx: APIContext) -> Args:
    """Datacenter + QueryOptions from the query string (reference ``parseInternal``)."""
    stale = has_arg(request, "stale")
    consistent = has_arg(request, "consistent")
    if stale and consistent:
        raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    out: Args = {
        "Datacenter": datacenter(request, ctx),
        "Token": token(request) or ctx.default_token,
        "AllowStale": stale,
        "RequireConsistent": consistent,
        "MinQueryIndex": 0,
        "MaxQueryTime": 0,
    }
    wait = arg(request, "wait")
    if wait is not None:
        try:
            seconds = parse_duration(wait)
        except ValueError:
            raise HTTPError(400, "Invalid wait time") from None
        out["MaxQueryTime"] = int(seconds * 1e9)
    index = arg(request, "index")
    if index is not None:
        if not index.isdigit() or int(index) >= 2**64:
            raise HTTPError(400, "Invalid index")
        out["MinQueryIndex"] = int(index)
    return out


def write_args(request: IRequest, ctx: APIContext) -> Args:
    return {"Datacenter": datacenter(request, ctx), "Token": token(request) or ctx.default_token}


def json_body(request: IRequest) -> Any:
    """The decoded JSON body, or HTTPError 400 "Request decode failed: ..."."""
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return None
    try:
        value = jsondecode.loads(raw.decode("utf-8"))
    except jsondecode.TooDeep:
        value = None
    except ValueError as exc:  # not JSON, not UTF-8, NaN/Infinity, a number out of range
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    else:
        if _depth_within(value, MAX_JSON_DEPTH):
            return value
    raise HTTPError(400, f"Request decode failed: JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _depth_within(value: Any, limit: int) -> bool:
    """True if ``value`` nests at most ``limit`` arrays/objects deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


# -- responses -------------------------------------------------------------------------------


def set_header(request: IRequest, name: str, value: str) -> None:
    request.setHeader(name, value)


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, bytes):
            return base64.b64encode(o).decode("ascii")
        return super().default(o)


# one encoder for every answer (json.dumps with ``cls`` builds a new one per call)
_ENCODER = _Encoder(separators=(",", ":"))
_JSON_BOOLS = {True: b"true", False: b"false"}


def to_json(value: Any) -> bytes:
    if value is True or value is False:
        # the answer of every KV write, CAS and lock call: a constant
        return _JSON_BOOLS[value]
    return _ENCODER.encode(value).encode()


def set_meta(request: IRequest, reply: Args) -> None:
    """The blocking-query headers from a reply's QueryMeta."""
    set_header(request, "X-Consul-Index", str(reply.get("Index", 0)))
    set_header(request, "X-Consul-KnownLeader", "true" if reply.get("KnownLeader") else "false")
    if reply.get("ResultsFilteredByACLs"):
        set_header(request, "X-Consul-Results-Filtered-By-ACLs", "true")
    set_header(request, "X-Consul-LastContact", str(int(reply.get("LastContact", 0) // 1_000_000)))


def body_reply(request: IRequest, code: int, content_type: str, body: bytes) -> bytes:
    """Status, ``Content-Type`` and ``Content-Length`` for ``body`` (returned as is).

    With the length known, Twisted sends the body in one write instead of chunked encoding.
    """
    request.setResponseCode(code)
    set_header(request, "Content-Type", content_type)
    set_header(request, "Content-Length", str(len(body)))
    return body


def json_reply(request: IRequest, value: Any, code: int = 200) -> bytes:
    return body_reply(request, code, "application/json", to_json(value))


def text_reply(request: IRequest, code: int, message: str) -> bytes:
    return body_reply(request, code, "text/plain; charset=utf-8", message.encode("utf-8"))


def error_reply(request: IRequest, error: BaseException | Failure) -> bytes:
    """Map an exception to the reference's status code and a one-line message.

    Anything unexpected is logged with its traceback and the request (:func:`log_unexpected`)
    and answered ``500 internal error: <class>``.
    """
    if isinstance(error, Failure):
        failure: Failure | None = error
        exc: BaseException = error.value if error.value is not None else Exception("unknown")
    else:
        failure, exc = None, error
    if isinstance(exc, HTTPError):
        for name, value in exc.headers.items():
            set_header(request, name, value)
        return text_reply(request, exc.code, exc.message)
    text = str(exc)
    if "Permission denied" in text or "ACL not found" in text:
        # as the reference: matched by substring, so errors from other servers map too
        return text_reply(request, 403, text.splitlines()[0] if text else text)
    if text == "ACL support disabled":
        return text_reply(request, 401, text)
    if isinstance(exc, BadRequestError | StateError | ACLError | RulesError):
        return text_reply(request, 400, str(exc))
    if isinstance(exc, NotFoundError):
        return text_reply(request, 404, str(exc))
    if isinstance(exc, RPCLayerError) and str(exc) == RPC_RATE_EXCEEDED:
        # A client agent over limits.rpc_rate: 429 with an empty body, as Consul.
        return body_reply(request, 429, "text/plain; charset=utf-8", b"")
    if isinstance(
        exc,
        NoPathToDatacenterError | NoLeaderError | EndpointError | RPCLayerError | LeadershipError,
    ):
        # As the reference: RPC failures (including errors returned by a remote server, and a
        # write whose leader lost its leadership before the entry committed: its outcome is
        # unknown, so it is not retried) are 500s carrying the error text.
        return text_reply(request, 500, str(exc))
    if failure is None:
        failure = Failure(exc, type(exc), exc.__traceback__)
    log_unexpected(request, failure)
    return text_reply(request, 500, f"internal error: {exc.__class__.__name__}")


def log_unexpected(request: IRequest, failure: Failure) -> None:
    """Log an unexpected handler failure with its traceback, method and path (never the query:
    it may carry a token)."""
    log.failure(
        "unexpected error serving {method} {path}",
        failure=failure,
        method=request.method.decode("ascii", "replace"),
        path=request.uri.partition(b"?")[0].decode("utf-8", "replace")[:200],
    )


Route = Callable[..., Coroutine[Any, Any, bytes] | Deferred[bytes] | IResource]
Answer = Deferred[bytes] | IResource


def endpoint(fn: Route) -> Callable[..., Answer]:
    """Run a route family's handler method (``fn(self, request, ...)``: a coroutine function, or
    a function returning a Deferred or a resource such as a parked response); any exception
    becomes :func:`error_reply`. A cancelled request (the client went away) stays cancelled and
    is not logged."""

    def wrapper(self: Any, request: IRequest, *a: Any, **kw: Any) -> Answer:
        return _settle(request, fn, (self, request, *a), kw)

    return _named(wrapper, fn)


def _named(wrapper: Callable[..., Answer], fn: Route) -> Callable[..., Answer]:
    # Klein names endpoints after the function: make them unique per module and handler.
    wrapper.__name__ = f"{fn.__module__}.{fn.__qualname__}"
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _settle(request: IRequest, fn: Route, a: tuple[Any, ...], kw: dict[str, Any]) -> Answer:
    try:
        result = fn(*a, **kw)
    except Exception:
        return succeed(error_reply(request, Failure()))
    if isinstance(result, Coroutine):
        result = Deferred.fromCoroutine(result)
    if isinstance(result, Deferred):
        result.addErrback(_failed, request)
    return result


def _failed(failure: Failure, request: IRequest) -> Any:
    if isinstance(failure.value, CancelledError) or failure.value is None:
        return failure
    return error_reply(request, failure)
