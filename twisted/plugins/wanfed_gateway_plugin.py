"""twistd plugin: ``twistd -n wanfed-gateway <the flags of wanfed gateway>``.

Takes exactly the flags of ``wanfed gateway`` (``-routes``/``-proxy-id``, ``-address``,
``-admin-bind``, ``-data-path``, ...; one or two dashes), parsed by the same argparse parser, and
runs the same service. A bad command line prints one line and exits 2 (Consul's ``connect envoy``
flag errors: exit 1, as Consul); ``-envoy-config`` prints the bootstrap and exits 0. SIGHUP
reloads (the routes file, or the registration from the agent) and never stops the gateway; a
listener that cannot bind, or a refused ``-register``, prints one line and exits 1. Logging
follows twistd's own options; ``twistd --logger wanfedtx.logs.twistd_observer -n wanfed-gateway
...`` gives Consul-style lines at ``-log-level`` (and JSON with ``-log-json``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    synopsis = "(-routes FILE -address ADDR:PORT | -proxy-id ID) [wanfed gateway flags]"
    longdesc = (
        "Run a wanfed mesh gateway (SNI-routing TLS passthrough relay with an Envoy-like admin"
        " API) under twistd; the flags are those of `wanfed gateway -h`."
    )

    def parseOptions(self, options: list[str] | None = None) -> None:
        from wanfedtx.cli.gateway import HELP, configure

        parser = argparse.ArgumentParser(prog="twistd wanfed-gateway", description=HELP)
        configure(parser)
        args = sys.argv[1:] if options is None else options
        self["args"] = parser.parse_args(args)  # prints one line and exits 2 on bad flags


@implementer(IServiceMaker, IPlugin)
class GatewayServiceMaker:
    tapname = "wanfed-gateway"
    description = "wanfed mesh gateway: SNI relay + Envoy-like admin API (`wanfed gateway` flags)."
    options = Options

    def makeService(self, options: Options) -> Any:
        from twisted.internet import reactor

        from wanfedtx.cli.gateway import install_sighup, make_service
        from wanfedtx.cli.interrupt import stop_on_ctrl_c
        from wanfedtx.cli.main import UsageError
        from wanfedtx.gateway.register import GatewayFlagError
        from wanfedtx.logs import configure_twistd

        args = options["args"]
        try:
            svc = make_service(args, reactor, on_fatal=lambda line: fatal(reactor, line))
        except GatewayFlagError as e:
            print(str(e), file=sys.stderr)  # Consul's text and exit code
            raise SystemExit(1) from None
        except UsageError as e:
            print(f"twistd wanfed-gateway: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        if svc is None:
            raise SystemExit(0)  # -envoy-config printed the bootstrap
        configure_twistd(args.log_level, args.log_json)
        install_sighup(reactor, svc)  # now: a SIGHUP while starting must not end the process
        stop_on_ctrl_c()  # the reactor takes SIGINT over only from Python's default handler
        return svc


def fatal(reactor: Any, line: str) -> None:
    """A listener that cannot bind or a refused registration: one line on stderr, then stop
    and exit 1 once every service has stopped (twistd itself would exit 0)."""
    import os

    print(line, file=sys.stderr, flush=True)
    if not reactor.running:  # twistd starts the service before running the reactor
        raise SystemExit(1)
    if reactor.running:

        def exit_1() -> None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)

        reactor.addSystemEventTrigger("after", "shutdown", exit_1)
        reactor.stop()


serviceMaker = GatewayServiceMaker()
