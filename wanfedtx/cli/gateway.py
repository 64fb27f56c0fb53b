# -*- test-case-name: tests.integration.gateway -*-
"""``wanfed gateway``: run the mesh gateway (SNI relay + admin API) or print its Envoy config.

    wanfed gateway -proxy-id mesh-gateway -http-addr 127.0.0.1:8500 -admin-bind 127.0.0.1:19000
    wanfed gateway -address 0.0.0.0:4431 -admin-bind 127.0.0.1:19000 -routes routes.hcl
    wanfed gateway -address 0.0.0.0:4431 -routes routes.json -envoy-config > envoy.json

With ``-proxy-id`` the routes come from the local agent, as Envoy's come from proxycfg: the
gateway's service registration, the local servers and the federation states' mesh gateways,
watched with blocking queries (``wanfedtx.gateway.agentwatch``); it listens on the
registration's default bind unless ``-address`` says otherwise. With ``-routes`` the routes file
(JSON or HCL; docs/gateway.md) is re-read on SIGHUP and when its modification time changes; a
bad file is logged and the previous routes stay in force.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from wanfedtx.cli.main import UsageError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

    from wanfedtx.reactors import ReactorLike

HELP = "Run a mesh gateway: SNI-routing TLS passthrough relay with an Envoy-like admin API."


def _duration(text: str) -> float:
    """Go-style durations as Consul takes them: 5s, 250ms, 1m, 1h; a bare number is seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip()
    for suffix in ("ms", "s", "m", "h"):
        if t.endswith(suffix):
            try:
                return float(t[: -len(suffix)]) * units[suffix]
            except ValueError:
                break
    try:
        return float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}; use e.g. 5s or 250ms"
        ) from None


def parse_hostport(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"{flag} must be ADDR:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "-address",
        "--address",
        default=None,
        help="ADDR:PORT the gateway listens on (required with -routes; with -proxy-id the"
        " registration's default bind)",
    )
    a("-admin-bind", "--admin-bind", default=None, help="ADDR:PORT of the admin API")
    a("-routes", "--routes", default=None, help="routes file (JSON or HCL)")
    a(
        "-proxy-id",
        "--proxy-id",
        default=None,
        help="ID of this gateway's mesh-gateway service on the local agent: take the routes"
        " from the agent instead of a file",
    )
    a(
        "-http-addr",
        "--http-addr",
        default=os.environ.get("CONSUL_HTTP_ADDR", "127.0.0.1:8500"),
        help="the local agent's HTTP API, with -proxy-id (default $CONSUL_HTTP_ADDR or"
        " 127.0.0.1:8500)",
    )
    a(
        "-token",
        "--token",
        default=os.environ.get("CONSUL_HTTP_TOKEN", ""),
        help="ACL token for the agent's API (default $CONSUL_HTTP_TOKEN)",
    )
    a(
        "-trust-domain",
        "--trust-domain",
        default="consul",
        help="trust domain of <dc>.internal.<trust-domain> cluster names, with -proxy-id"
        " (there is no Connect CA yet to take it from; default consul)",
    )
    a(
        "-envoy-config",
        "--envoy-config",
        action="store_true",
        help="print the equivalent Envoy v3 bootstrap JSON and exit",
    )
    a(
        "-data-path",
        "--data-path",
        choices=("loop", "twisted"),
        default=None,
        help="relay engine: loop (epoll + splice(2) threads, Linux) or twisted (default: loop"
        " where available)",
    )
    a(
        "-hello-timeout",
        "--hello-timeout",
        type=_duration,
        default=5.0,
        help="time allowed for the whole ClientHello (default 5s)",
    )
    a(
        "-idle-timeout",
        "--idle-timeout",
        type=_duration,
        default=3600.0,
        help="close relayed connections idle this long (default 1h; 0 disables)",
    )
    a(
        "-max-connections",
        "--max-connections",
        type=int,
        default=10000,
        help="downstream connections open at once (default 10000)",
    )
    a(
        "-reload-interval",
        "--reload-interval",
        type=_duration,
        default=1.0,
        help="how often the routes file's mtime is checked (default 1s; 0 disables)",
    )
    a(
        "-pipe-size",
        "--pipe-size",
        type=int,
        default=1 << 20,
        help="bytes of pipe per direction on the loop path (default 1 MiB)",
    )
    a(
        "-workers",
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 4),
        help="relay loops sharing the port on the loop path (default: the CPU count, at most"
        " 4); -max-connections applies to each",
    )
    a("-log-level", "--log-level", default="info", help="trace, debug, info, warn or err")
    a("-log-json", "--log-json", action="store_true", help="log as JSON lines")


def run(args: argparse.Namespace) -> int:
    from wanfedtx.logs import start_logging
    from wanfedtx.reactors import installed_reactor

    r = installed_reactor()
    svc = make_service(args, r)
    if svc is None:
        return 0  # -envoy-config printed the bootstrap
    start_logging(args.log_level, args.log_json)
    if args.routes is not None:
        install_sighup(r, svc)
    r.callWhenRunning(svc.startService)
    r.addSystemEventTrigger("before", "shutdown", svc.stopService)
    r.run()
    return 0


def make_service(args: argparse.Namespace, reactor: ReactorLike) -> Any:
    """The ``GatewayService`` the parsed flags describe (shared with ``twistd wanfed-gateway``),
    or None after printing the Envoy bootstrap for ``-envoy-config``. Raises ``UsageError``."""
    from wanfedtx.gateway.envoy import envoy_bootstrap
    from wanfedtx.gateway.errors import RoutesFileError
    from wanfedtx.gateway.routes import load_routes
    from wanfedtx.gateway.service import GatewayService

    if (args.routes is None) == (args.proxy_id is None):
        raise UsageError(
            "give exactly one of -routes (a routes file) or -proxy-id (routes from the agent)"
        )
    admin = parse_hostport(args.admin_bind, "-admin-bind") if args.admin_bind else None
    settings = _relay_settings(args)
    if args.proxy_id is not None:
        if args.envoy_config:
            raise UsageError("-envoy-config needs -routes")
        address = parse_hostport(args.address, "-address") if args.address else None
        http = args.http_addr if "://" in args.http_addr else f"http://{args.http_addr}"
        return GatewayService.from_agent(
            reactor,
            address,
            http,
            args.proxy_id,
            trust_domain=args.trust_domain,
            token=args.token,
            admin=admin,
            settings=settings,
        )
    if args.address is None:
        raise UsageError("-routes needs -address")
    host, port = parse_hostport(args.address, "-address")
    try:
        snapshot = load_routes(args.routes, host, port)
    except RoutesFileError as e:
        raise UsageError(str(e)) from None
    if args.envoy_config:
        json.dump(envoy_bootstrap(snapshot, admin), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return None
    return GatewayService(
        reactor,
        (host, port),
        snapshot,
        admin=admin,
        settings=settings,
        routes_path=args.routes,
        reload_interval=args.reload_interval or None,
    )


def install_sighup(reactor: IReactorFromThreads, svc: Any) -> None:
    """SIGHUP re-reads the routes file (with -routes; a no-op with -proxy-id)."""
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(svc.reload))


def _relay_settings(args: argparse.Namespace) -> Any:
    from wanfedtx.gateway.conn import RelaySettings
    from wanfedtx.gateway.pump import splice_available

    data_path = args.data_path or ("loop" if splice_available() else "twisted")
    if data_path == "loop" and not splice_available():
        raise UsageError(f"-data-path {data_path} needs Linux (splice(2)); use -data-path twisted")
    return RelaySettings(
        hello_timeout=args.hello_timeout,
        idle_timeout=args.idle_timeout or None,
        max_connections=args.max_connections or None,
        data_path=data_path,
        pipe_size=args.pipe_size,
        workers=args.workers,
    )
