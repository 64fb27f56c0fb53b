# -*- test-case-name: tests.unit.cli.test_cli_http_verbs -*-
"""What every HTTP verb of the ``wanfed`` command shares: Consul's client flags and environment
variables, a small synchronous HTTP client, Consul's error lines and its table layout.

Flags (``-http-addr``, ``-token``, ``-token-file``, ``-ca-file``, ``-client-cert``,
``-client-key``, ``-tls-server-name``; ``-datacenter`` and ``-stale`` for the commands that read
server state) win over the environment, which wins over the defaults. Each setting is read from
``WANFED_<NAME>`` first, then ``CONSUL_<NAME>`` (``WANFED_HTTP_ADDR``, ``CONSUL_HTTP_ADDR``, ...).

The client speaks plain ``http.client`` (one request per connection): a CLI command makes one or
a few requests and exits, so it needs no reactor. ``TRANSPORT`` is the function that sends a
request; the unit tests replace it with one that serves the request in memory.
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import attrs

from wanfedtx import jsondecode

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"


class APIError(Exception):
    """The agent could not be asked, or answered with an error; the message is Consul's line."""


class UnexpectedResponse(APIError):
    """A non-200 answer: ``Unexpected response code: <code> (<body>)``."""

    def __init__(self, code: int, body: bytes) -> None:
        self.code = code
        self.body = body.decode("utf-8", "replace").strip()
        super().__init__(f"Unexpected response code: {code} ({self.body})")


@attrs.frozen
class Request:
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    timeout: float | None = None
    tls: ssl.SSLContext | None = None
    server_name: str = ""  # the name to verify in the agent's certificate (default: the host)


@attrs.frozen
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = attrs.field(factory=dict)
    lines: Iterator[bytes] | None = None  # streaming answers: the body's lines as they come


def _connection(req: Request) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(req.url)
    host = parts.hostname or "127.0.0.1"
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        conn = _HTTPSConnection(host, parts.port or 443, timeout=req.timeout, context=req.tls)
        conn.server_name = req.server_name or host
        return conn, target
    return http.client.HTTPConnection(host, parts.port or 80, timeout=req.timeout), target


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS that verifies ``server_name`` (``-tls-server-name``) instead of the host dialed."""

    server_name = ""

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        context = self._context  # type: ignore[attr-defined]
        self.sock = context.wrap_socket(self.sock, server_hostname=self.server_name or self.host)


def _go_error(req: Request, exc: BaseException) -> str:
    """Consul's (Go's) words for a failed request: ``Get "<url>": dial tcp <addr>: ...``."""
    parts = urlsplit(req.url)
    verb = req.method.title()
    if isinstance(exc, ConnectionRefusedError):
        return f'{verb} "{req.url}": dial tcp {parts.netloc}: connect: connection refused'
    if isinstance(exc, TimeoutError):
        return f'{verb} "{req.url}": dial tcp {parts.netloc}: i/o timeout'
    return f'{verb} "{req.url}": {exc}'


def http_transport(req: Request, stream: bool = False) -> Response:
    """Send ``req`` over ``http.client``; with ``stream`` the body is read line by line."""
    conn, target = _connection(req)
    try:
        conn.request(req.method, target, body=req.body, headers=req.headers)
        resp = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise APIError(_go_error(req, exc)) from None
    headers = {k.lower(): v for k, v in resp.getheaders()}
    if stream and resp.status == 200:
        return Response(resp.status, b"", headers, _lines(conn, resp))
    try:
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise APIError(_go_error(req, exc)) from None
    finally:
        conn.close()
    return Response(resp.status, body, headers)


def _lines(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> Iterator[bytes]:
    try:
        while True:
            try:
                line = resp.readline()
            except (OSError, http.client.HTTPException):
                return
            if not line:
                return
            yield line
    finally:
        conn.close()


Transport = Callable[[Request, bool], Response]
TRANSPORT: list[Transport] = [http_transport]
"""The transport in use (a one-item list so tests can swap it)."""


def env(name: str, default: str = "") -> str:
    """``WANFED_<name>``, else ``CONSUL_<name>``, else ``default``."""
    for prefix in ("WANFED_", "CONSUL_"):
        value = os.environ.get(prefix + name)
        if value:
            return value
    return default


def _env_bool(name: str) -> bool | None:
    value = env(name).strip().lower()
    if not value:
        return None
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    print(f"Warning: could not parse {name} value {value!r} as a boolean", file=sys.stderr)
    return None


# -- flags -----------------------------------------------------------------------------------


def add_client_flags(parser: argparse.ArgumentParser, server: bool = False) -> None:
    """Consul's HTTP client flags; ``server`` adds ``-datacenter`` and ``-stale``."""
    add = parser.add_argument
    add("-http-addr", dest="http_addr", default=None, metavar="ADDR",
        help="The address and port of the agent HTTP API; http://, https:// accepted "
        f"($WANFED_HTTP_ADDR or $CONSUL_HTTP_ADDR, default {DEFAULT_HTTP_ADDR})")
    add("-token", dest="token", default=None,
        help="ACL token for the request ($WANFED_HTTP_TOKEN or $CONSUL_HTTP_TOKEN)")
    add("-token-file", dest="token_file", default=None, metavar="PATH",
        help="File holding the ACL token; wins over -token ($CONSUL_HTTP_TOKEN_FILE)")
    add("-ca-file", dest="ca_file", default=None, metavar="PATH",
        help="CA file to verify the agent's HTTPS certificate ($CONSUL_CACERT)")
    add("-client-cert", dest="client_cert", default=None, metavar="PATH",
        help="Client certificate for HTTPS ($CONSUL_CLIENT_CERT)")
    add("-client-key", dest="client_key", default=None, metavar="PATH",
        help="Client key for HTTPS ($CONSUL_CLIENT_KEY)")
    add("-tls-server-name", dest="tls_server_name", default=None, metavar="NAME",
        help="Server name to verify in the agent's certificate ($CONSUL_TLS_SERVER_NAME)")
    if server:
        add("-datacenter", dest="datacenter", default="",
            help="Name of the datacenter to query (default: the agent's)")
        add("-stale", dest="stale", action="store_true",
            help="Let any server answer, not only the leader (reads may be stale)")


# -- the client ------------------------------------------------------------------------------


@attrs.define
class Client:
    """The agent's HTTP API as the flags describe it."""

    base: str
    token: str = ""
    datacenter: str = ""
    stale: bool = False
    tls: ssl.SSLContext | None = None
    server_name: str = ""

    def url(self, path: str, query: Sequence[tuple[str, str | None]] = ()) -> str:
        params = list(query)
        if self.datacenter:
            params.append(("dc", self.datacenter))
        if self.stale:
            params.append(("stale", None))
        qs = "&".join(
            quote(k) if v is None else f"{quote(k)}={quote(v, safe='')}" for k, v in params
        )
        return self.base + quote(path) + (f"?{qs}" if qs else "")

    def send(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str | None]] = (),
        body: bytes | None = None,
        stream: bool = False,
        timeout: float | None = 60.0,
    ) -> Response:
        """One request; transport failures raise :class:`APIError`."""
        headers = {"User-Agent": "wanfed"}
        if self.token:
            headers["X-Consul-Token"] = self.token
        req = Request(method, self.url(path, query), body, headers, timeout, self.tls,
                      self.server_name)
        return TRANSPORT[0](req, stream)

    def call(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str | None]] = (),
        body: bytes | None = None,
    ) -> Response:
        """Like :meth:`send`, but anything but 200 raises :class:`UnexpectedResponse`."""
        resp = self.send(method, path, query, body)
        if resp.status != 200:
            raise UnexpectedResponse(resp.status, resp.body)
        return resp

    def get_json(self, path: str, query: Sequence[tuple[str, str | None]] = ()) -> Any:
        resp = self.call("GET", path, query)
        try:
            return jsondecode.loads(resp.body or b"null")
        except ValueError as exc:
            raise APIError(f"invalid JSON from the agent: {exc}") from None


def _tls_context(args: argparse.Namespace, verify: bool) -> ssl.SSLContext:
    ca = getattr(args, "ca_file", None) or env("CACERT") or None
    ctx = ssl.create_default_context(cafile=ca)
    ca_path = env("CAPATH")
    if ca_path:
        ctx.load_verify_locations(capath=ca_path)
    cert = getattr(args, "client_cert", None) or env("CLIENT_CERT")
    key = getattr(args, "client_key", None) or env("CLIENT_KEY")
    if cert:
        ctx.load_cert_chain(cert, key or None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_from_args(args: argparse.Namespace) -> Client:
    """The :class:`Client` for a parsed command line (flags > environment > defaults).

    Raises :class:`APIError` with Consul's line for a bad address or an unreadable token file.
    """
    addr = getattr(args, "http_addr", None) or env("HTTP_ADDR", DEFAULT_HTTP_ADDR)
    scheme = "http"
    if "://" in addr:
        scheme, _, addr = addr.partition("://")
        if scheme not in ("http", "https"):
            raise APIError(f"Unknown protocol scheme: {scheme}")
    elif _env_bool("HTTP_SSL"):
        scheme = "https"
    token = getattr(args, "token", None) or env("HTTP_TOKEN")
    token_file = getattr(args, "token_file", None) or env("HTTP_TOKEN_FILE")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise APIError(f"Error loading token file: {exc}") from None
    tls = None
    if scheme == "https":
        try:
            tls = _tls_context(args, _env_bool("HTTP_SSL_VERIFY") is not False)
        except (OSError, ssl.SSLError) as exc:
            raise APIError(f"Error initializing client: {exc}") from None
    return Client(
        base=f"{scheme}://{addr.rstrip('/')}",
        token=token,
        datacenter=getattr(args, "datacenter", "") or "",
        stale=bool(getattr(args, "stale", False)),
        tls=tls,
        server_name=getattr(args, "tls_server_name", None) or env("TLS_SERVER_NAME"),
    )



def client_or_none(args: argparse.Namespace, prefix: str = "") -> Client | None:
    """:func:`client_from_args`, or None after printing ``prefix`` and Consul's line on
    stderr (the command then exits 1)."""
    try:
        return client_from_args(args)
    except APIError as exc:
        err(f"{prefix}{exc}")
        return None


def agent_put(args: argparse.Namespace, path: str, failure: str, success: str) -> int:
    """``PUT path`` on the agent for a verb without output of its own: ``success`` on stdout
    (exit 0), or ``failure: <error>`` on stderr (exit 1)."""
    try:
        client_from_args(args).call("PUT", path)
    except APIError as exc:
        err(f"{failure}: {exc}")
        return 1
    out(success)
    return 0

# -- output ----------------------------------------------------------------------------------


def columnize(rows: Sequence[Sequence[str]]) -> str:
    """Consul's tables (``columnize``): cells trimmed, columns padded to the widest cell, two
    spaces between columns, the last column unpadded (no trailing blanks)."""
    cleaned = [[c.strip() for c in row] for row in rows]
    if not cleaned:
        return ""
    ncols = max(len(r) for r in cleaned)
    widths = [max((len(r[i]) for r in cleaned if i < len(r)), default=0) for i in range(ncols)]
    out = []
    for row in cleaned:
        cells = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def tabwrite(rows: Sequence[Sequence[str]], padding: int = 6) -> str:
    """Go's ``tabwriter`` with ``padding``: each column but the last padded to its widest cell
    plus ``padding`` spaces."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [max((len(r[i]) for r in rows if i < len(r) - 1), default=0) for i in range(ncols)]
    return "\n".join(
        "".join(c.ljust(widths[i] + padding) if i < len(r) - 1 else c for i, c in enumerate(r))
        for r in rows
    )


def err(message: str) -> None:
    print(message, file=sys.stderr)


def out(message: str | bytes) -> None:
    """One result line on stdout (bytes are written as they are). A reader that went away
    (``wanfed kv get -recurse | head``) ends the command quietly."""
    try:
        if isinstance(message, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(message + b"\n")
            sys.stdout.buffer.flush()
        else:
            print(message)
            sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        raise SystemExit(0) from None


def no_extra_args(args: Sequence[str], expected: int = 0) -> str | None:
    """Consul's ``Too many arguments (expected N, got M)`` when there are more than ``expected``."""
    if len(args) > expected:
        return f"Too many arguments (expected {expected}, got {len(args)})"
    return None
