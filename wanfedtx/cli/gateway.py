# -*- test-case-name: tests.integration.gateway -*-
"""``wanfed gateway``: run the mesh gateway (SNI relay + admin API) or print its Envoy config.

    wanfed gateway -gateway=mesh -register -expose-servers -address 10.0.0.5:4431 \
        -wan-address 203.0.113.5:4431 -http-addr 127.0.0.1:8500
    wanfed gateway -proxy-id mesh-gateway -http-addr 127.0.0.1:8500 -admin-bind 127.0.0.1:19000
    wanfed gateway -address 0.0.0.0:4431 -admin-bind 127.0.0.1:19000 -routes routes.hcl
    wanfed gateway -address 0.0.0.0:4431 -routes routes.json -envoy-config > envoy.json

With ``-gateway=mesh -register`` the gateway registers its ``mesh-gateway`` service with the
local agent as ``consul connect envoy`` does (``wanfedtx.gateway.register``; Consul's flag
errors, verbatim, exit 1), runs from the agent as with ``-proxy-id`` and deregisters on exit.
The admin API listens on ``127.0.0.1:19000`` unless ``-admin-bind`` says otherwise (empty: off).
SIGHUP reloads in every mode; a listener that cannot bind is one line and exit 1.

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
import math
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wanfedtx.cli.interrupt import stop_on_ctrl_c
from wanfedtx.cli.main import UsageError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

    from wanfedtx.reactors import ReactorLike

DEFAULT_ADMIN_BIND = "127.0.0.1:19000"  # Envoy's localhost:19000, resolved
DEFAULT_DEREGISTER_AFTER_CRITICAL = "6h"

HELP = "Run a mesh gateway: SNI-routing TLS passthrough relay with an Envoy-like admin API."


def _duration(text: str) -> float:
    """A Go duration as Consul takes them (``5s``, ``250ms``, ``1h30m``); a bare number is
    seconds (older scripts)."""
    from wanfedtx.config.durations import DurationError, parse_duration

    t = text.strip()
    try:
        seconds = float(t)
    except ValueError:
        try:
            seconds = parse_duration(t)
        except DurationError as e:
            raise argparse.ArgumentTypeError(f"{e}; use e.g. 5s, 250ms or 1h30m") from None
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: not a finite number")
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: negative")
    return seconds


def _log_level(text: str) -> str:
    """``-log-level``: Consul's level names; anything else is a usage error (one line)."""
    from wanfedtx.logs import UnknownLogLevel, parse_level

    try:
        parse_level(text)
    except UnknownLogLevel as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


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
        " registration's default bind); with -register the LAN IP:PORT registered (port"
        " default 443), which the gateway listens on",
    )
    a(
        "-admin-bind",
        "--admin-bind",
        default=DEFAULT_ADMIN_BIND,
        help="ADDR:PORT of the admin API (default localhost:19000, as Envoy's; an empty value"
        " turns it off)",
    )
    a(
        "-gateway",
        "--gateway",
        default="",
        help="the kind of gateway: mesh (the only kind this gateway runs)",
    )
    a(
        "-mesh-gateway",
        "--mesh-gateway",
        action="store_true",
        help="deprecated spelling of -gateway=mesh",
    )
    a(
        "-register",
        "--register",
        action="store_true",
        help="register the gateway's service with the local agent (deregistered on exit)",
    )
    a(
        "-expose-servers",
        "--expose-servers",
        action="store_true",
        help="Expose the servers for WAN federation via this mesh gateway",
    )
    a(
        "-service",
        "--service",
        default="",
        help="the gateway's service name (default mesh-gateway); also its ID with -register",
    )
    a(
        "-wan-address",
        "--wan-address",
        default="",
        help="IP:PORT of the WAN address registered with -register (port: the LAN port)",
    )
    a(
        "-deregister-after-critical",
        "--deregister-after-critical",
        default=DEFAULT_DEREGISTER_AFTER_CRITICAL,
        help="with -register, the TCP check's DeregisterCriticalServiceAfter (default 6h)",
    )
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
        default="",
        help="trust domain of <dc>.internal.<trust-domain> cluster names, with -proxy-id"
        " (default: the agent's Connect CA roots, <cluster-id>.consul; this overrides it)",
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
        "-loop-relay",
        "--loop-relay",
        choices=("auto", "c", "python"),
        default="auto",
        help="who relays a routed connection on the loop data path: c (the compiled relay),"
        " python, or auto (c where it was built; the default)",
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
    a("-log-level", "--log-level", type=_log_level, default="info",
      help="trace, debug, info, warn or err")
    a("-log-json", "--log-json", action="store_true", help="log as JSON lines")


def run(args: argparse.Namespace) -> int:
    from wanfedtx.gateway.register import GatewayFlagError
    from wanfedtx.gctune import tune_gc
    from wanfedtx.logs import start_logging
    from wanfedtx.reactors import installed_reactor

    r = installed_reactor()
    status = {"code": 0}

    def fatal(line: str) -> None:
        """A listener that cannot bind, or a registration the agent refused: one line, exit 1."""
        print(line, file=sys.stderr, flush=True)
        status["code"] = 1
        if r.running:
            r.stop()

    try:
        svc = make_service(args, r, on_fatal=fatal)
    except GatewayFlagError as e:
        print(str(e), file=sys.stderr)  # Consul's text, as `consul connect envoy` prints it
        return 1
    if svc is None:
        return 0  # -envoy-config printed the bootstrap
    start_logging(args.log_level, args.log_json)
    install_sighup(r, svc)
    stop_on_ctrl_c()  # so that the reactor stops on SIGINT, however the gateway was started
    r.callWhenRunning(svc.startService)
    r.addSystemEventTrigger("before", "shutdown", svc.stopService)
    tune_gc()  # start-up objects leave the collector's view, as in the agent (gctune.py)
    r.run()
    return status["code"]


def gateway_flags(args: argparse.Namespace) -> Any:
    from wanfedtx.gateway.register import GatewayFlags

    return GatewayFlags(
        gateway=args.gateway,
        mesh_gateway=args.mesh_gateway,
        register=args.register,
        expose_servers=args.expose_servers,
        proxy_id=args.proxy_id or "",
        service=args.service,
        address=args.address or "",
        wan_address=args.wan_address,
        deregister_after_critical=args.deregister_after_critical,
    )


def make_service(
    args: argparse.Namespace, reactor: ReactorLike, on_fatal: Callable[[str], object] | None = None
) -> Any:
    """The service the parsed flags describe (shared with ``twistd wanfed-gateway``): a
    ``GatewayService``, a ``RegisteredGateway`` around one with ``-register``, or None after
    printing the Envoy bootstrap for ``-envoy-config``. Raises ``UsageError``, or
    ``GatewayFlagError`` with Consul's text for the ``connect envoy`` flags. ``on_fatal`` gets
    the line of a listener that cannot bind or of a refused registration."""
    from wanfedtx.gateway.envoy import envoy_bootstrap
    from wanfedtx.gateway.errors import RoutesFileError
    from wanfedtx.gateway.register import (
        AgentClient,
        RegisteredGateway,
        check_gateway_flags,
        registration_payload,
    )
    from wanfedtx.gateway.routes import load_routes
    from wanfedtx.gateway.service import GatewayService

    flags = gateway_flags(args)
    kind = check_gateway_flags(flags)
    if kind and kind != "mesh-gateway":
        raise UsageError(f"-gateway: only mesh gateways are run by wanfed gateway, not {kind}")
    proxy_id = args.proxy_id
    if kind and proxy_id is None:
        # -register: the service's ID is its name; without it, the gateway's service is the one
        # registered under that name (mesh-gateway by default).
        proxy_id = flags.service or kind
    if (args.routes is None) == (proxy_id is None):
        raise UsageError(
            "give exactly one of -routes (a routes file) or -proxy-id (routes from the agent)"
        )
    admin = parse_hostport(args.admin_bind, "-admin-bind") if args.admin_bind else None
    settings = _relay_settings(args)
    if proxy_id is not None:
        if args.envoy_config:
            raise UsageError("-envoy-config needs -routes")
        payload = registration_payload(flags, kind) if flags.register else None
        # with -register, -address is the registered address and the gateway binds the
        # registration's default (that address, or 0.0.0.0 on its port)
        address = (
            parse_hostport(args.address, "-address")
            if args.address and payload is None
            else None
        )
        http = args.http_addr if "://" in args.http_addr else f"http://{args.http_addr}"
        gateway = GatewayService.from_agent(
            reactor,
            address,
            http,
            proxy_id,
            trust_domain=args.trust_domain or None,
            token=args.token,
            admin=admin,
            settings=settings,
            on_fatal=on_fatal,
        )
        if payload is None:
            return gateway
        return RegisteredGateway(
            AgentClient(http, args.token),
            payload,
            gateway,
            on_fatal if on_fatal is not None else _raise_fatal,
            reactor,
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
        on_fatal=on_fatal,
    )


def _raise_fatal(line: str) -> None:
    raise UsageError(line)


def install_sighup(reactor: IReactorFromThreads, svc: Any) -> None:
    """SIGHUP reloads, never stops: the routes file is re-read (-routes), or the registration
    and the agent's domain are read again now (-proxy-id; -register also registers again)."""
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(svc.reload))


def _relay_settings(args: argparse.Namespace) -> Any:
    from wanfedtx.gateway import relaynative
    from wanfedtx.gateway.conn import RelaySettings
    from wanfedtx.gateway.pump import splice_available

    data_path = args.data_path or ("loop" if splice_available() else "twisted")
    if data_path == "loop" and not splice_available():
        raise UsageError(f"-data-path {data_path} needs Linux (splice(2)); use -data-path twisted")
    try:
        relaynative.use_native(args.loop_relay)  # -loop-relay c where it was not built
    except RuntimeError as e:
        raise UsageError(str(e)) from None
    return RelaySettings(
        hello_timeout=args.hello_timeout,
        idle_timeout=args.idle_timeout or None,
        max_connections=args.max_connections or None,
        data_path=data_path,
        pipe_size=args.pipe_size,
        workers=args.workers,
        loop_relay=args.loop_relay,
    )
