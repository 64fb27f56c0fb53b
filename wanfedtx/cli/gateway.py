"""``wanfed gateway``: run the mesh gateway (SNI relay + admin API) or print its Envoy config.

    wanfed gateway -address 0.0.0.0:4431 -admin-bind 127.0.0.1:19000 -routes routes.hcl
    wanfed gateway -address 0.0.0.0:4431 -routes routes.json -envoy-config > envoy.json

The routes file (JSON or HCL; docs/gateway.md) is re-read on SIGHUP and when its modification time
changes; a bad file is logged and the previous routes stay in force.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

from wanfedtx.cli.main import UsageError

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
    a("-address", "--address", required=True, help="ADDR:PORT the gateway listens on")
    a("-admin-bind", "--admin-bind", default=None, help="ADDR:PORT of the admin API")
    a("-routes", "--routes", required=True, help="routes file (JSON or HCL)")
    a(
        "-envoy-config",
        "--envoy-config",
        action="store_true",
        help="print the equivalent Envoy v3 bootstrap JSON and exit",
    )
    a(
        "-data-path",
        "--data-path",
        choices=("loop", "splice", "twisted"),
        default=None,
        help="relay engine once both sides are connected (default: splice where available)",
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
        help="bytes of pipe per direction on the loop and splice paths (default 1 MiB)",
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
    from wanfedtx.gateway.envoy import envoy_bootstrap
    from wanfedtx.gateway.errors import RoutesFileError
    from wanfedtx.gateway.relay import RelaySettings
    from wanfedtx.gateway.routes import load_routes
    from wanfedtx.gateway.splice import splice_available

    host, port = parse_hostport(args.address, "-address")
    admin = parse_hostport(args.admin_bind, "-admin-bind") if args.admin_bind else None
    try:
        snapshot = load_routes(args.routes, host, port)
    except RoutesFileError as e:
        raise UsageError(str(e)) from None
    if args.envoy_config:
        json.dump(envoy_bootstrap(snapshot, admin), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    data_path = args.data_path or ("loop" if splice_available() else "twisted")
    if data_path in ("loop", "splice") and not splice_available():
        raise UsageError(f"-data-path {data_path} needs Linux (splice(2)); use -data-path twisted")
    settings = RelaySettings(
        hello_timeout=args.hello_timeout,
        idle_timeout=args.idle_timeout or None,
        max_connections=args.max_connections or None,
        data_path=data_path,
        pipe_size=args.pipe_size,
        workers=args.workers,
    )
    return _serve(args, (host, port), admin, snapshot, settings)


def _serve(
    args: argparse.Namespace,
    address: tuple[str, int],
    admin: tuple[str, int] | None,
    snapshot: Any,
    settings: Any,
) -> int:
    from twisted.internet import reactor

    from wanfedtx.gateway.service import GatewayService
    from wanfedtx.logs import start_logging

    start_logging(args.log_level, args.log_json)
    svc = GatewayService(
        reactor,
        address,
        snapshot,
        admin=admin,
        settings=settings,
        routes_path=args.routes,
        reload_interval=args.reload_interval or None,
    )
    r: Any = reactor
    signal.signal(signal.SIGHUP, lambda *_: r.callFromThread(svc.reload))
    r.callWhenRunning(svc.startService)
    r.addSystemEventTrigger("before", "shutdown", svc.stopService)
    r.run()
    return 0
