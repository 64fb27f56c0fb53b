# -*- test-case-name: tests.unit.agent.test_agent_units -*-
"""``wanfed agent``: run an agent with Consul's flags, until SIGINT or SIGTERM.

Config, TLS, file and listener errors at start-up print one line and exit 1. On start the agent
prints Consul's banner and the URL to open (``HTTP API: http://127.0.0.1:8500/v1/agent/self``).
Signals as Consul (``wanfedtx.agent.lifecycle``): SIGHUP reloads; SIGINT/SIGTERM leave gracefully
and exit 0, or, per ``skip_leave_on_interrupt``/``leave_on_terminate``, stop without leaving and
exit 1; either way every service stops and every socket is closed before the process exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from wanfedtx.agent.errors import AgentError
from wanfedtx.agent.flags import FLAGS, FlagError, flags_to_config, parse_bool
from wanfedtx.agent.lifecycle import SIGNAL_NAMES, SignalLoop
from wanfedtx.config import ConfigError, LoadOptions, LoadResult, load
from wanfedtx.gctune import tune_gc
from wanfedtx.logfile import LogFileSettings
from wanfedtx.logs import start_logging
from wanfedtx.reactors import ReactorLike
from wanfedtx.tls.errors import TLSError

HELP = "Runs a wanfed agent (Consul's agent flags)."

log = Logger(namespace="agent")
ui = Logger(namespace="ui")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument(
        "-dev",
        metavar="BOOL",
        nargs="?",
        const=True,
        default=False,
        type=parse_bool,
        help="Starts the agent in development mode.",
    )
    parser.add_argument(
        "-config-file",
        dest="config_paths",
        action="append",
        default=[],
        metavar="PATH",
        help="Path to a file in JSON or HCL format with a matching file "
        "extension. Can be specified multiple times.",
    )
    parser.add_argument(
        "-config-dir",
        dest="config_paths",
        action="append",
        metavar="DIR",
        help="Path to a directory to read configuration files from (.hcl and "
        ".json, in lexical order). Can be specified multiple times.",
    )
    parser.add_argument(
        "-config-format",
        choices=("hcl", "json"),
        default=None,
        help="Config files are in this format irrespective of their extension.",
    )
    parser.add_argument(
        "-hcl",
        action="append",
        default=[],
        metavar="HCL",
        help="hcl config fragment. Can be specified multiple times.",
    )
    for flag in FLAGS:
        dest = "flag_" + flag.name.replace("-", "_")
        metavar = {"int": "N", "list": "VALUE", "map": "KEY:VALUE"}.get(flag.kind, "VALUE")
        if flag.kind == "bool":
            parser.add_argument(
                f"-{flag.name}",
                dest=dest,
                nargs="?",
                const=True,
                default=None,
                type=parse_bool,
                metavar="BOOL",
                help=flag.help,
            )
        elif flag.kind == "int":
            parser.add_argument(
                f"-{flag.name}", dest=dest, type=int, default=None, metavar=metavar, help=flag.help
            )
        elif flag.kind in ("list", "map"):
            parser.add_argument(
                f"-{flag.name}",
                dest=dest,
                action="append",
                default=[],
                metavar=metavar,
                help=flag.help + " (repeatable)",
            )
        else:
            parser.add_argument(
                f"-{flag.name}", dest=dest, default=None, metavar=metavar, help=flag.help
            )


def options_from_args(args: argparse.Namespace) -> LoadOptions:
    values = {f.name: getattr(args, "flag_" + f.name.replace("-", "_")) for f in FLAGS}
    return LoadOptions(
        config_files=tuple(args.config_paths or ()),
        config_format=args.config_format,
        dev=bool(args.dev),
        flags=flags_to_config(values),
        hcl=tuple(args.hcl),
    )


def banner(result: LoadResult, agent: Any) -> list[str]:
    """Consul's start banner, listing only what this agent actually serves."""
    rt = agent.config
    http = f"HTTP: {rt.http_port}" if rt.http_addrs else "HTTP: -1"
    urls = agent.http_urls()
    lines = [
        "==> Starting Consul agent...",
        f"           Version: 'v{rt.version}'",
        f"           Node ID: '{rt.node_id}'",
        f"         Node name: '{rt.node_name}'",
        f"        Datacenter: '{rt.datacenter}' (Segment: '<all>')",
        f"            Server: {str(rt.server_mode).lower()} (Bootstrap: "
        f"{str(rt.bootstrap).lower()})",
        f"       Client Addr: [{' '.join(rt.client_addrs)}] ({http})",
        f"      Cluster Addr: {rt.advertise_addr_lan} (LAN: {rt.serf_port_lan}, WAN: "
        f"{rt.serf_port_wan if rt.server_mode else -1})",
        f"           Encrypt: Gossip: {str(bool(rt.encrypt_key)).lower()}, TLS-Outgoing: "
        f"{str(rt.verify_outgoing).lower()}, TLS-Incoming: {str(rt.verify_incoming).lower()}",
    ]
    if urls:
        lines.append(f"          HTTP API: {urls[0]}/v1/agent/self")
    lines += ["", "==> Log data will now stream in as it occurs:", ""]
    return lines


STARTUP_ERRORS = (AgentError, CannotListenError, TLSError, OSError)


def run(args: argparse.Namespace) -> int:
    # SIGHUP before the agent runs must not kill the process (Consul logs and ignores it)
    signal.signal(signal.SIGHUP, lambda *_: log.info("cannot reload before agent started"))
    try:
        opts = options_from_args(args)
        result = load(opts)
    except (ConfigError, FlagError, OSError) as e:
        print(str(e), file=sys.stderr)
        return 1
    rt = result.runtime
    try:
        start_logging(rt.log_level, rt.log_json, sys.stdout, LogFileSettings.from_runtime(rt))
    except OSError as e:
        print(f"==> Failed to setup logging: {e}", file=sys.stderr)
        return 1

    from wanfedtx.reactors import installed_reactor

    reactor = installed_reactor()

    from wanfedtx.agent.agent import Agent

    agent: Agent | None = None
    try:
        # PUT /v1/agent/leave (and exhausted joins) end the process.
        agent = Agent(rt, reactor, request_shutdown=reactor.stop)
        agent.startService()
    except STARTUP_ERRORS as e:
        print(f"==> Error starting agent: {startup_error_text(e)}", file=sys.stderr)
        if agent is not None:
            stop_started_parts(reactor, agent)
        return 1
    for line in banner(result, agent):
        ui.info("{line}", line=line, ui=True)
    for w in result.warnings:
        log.warn("{warning}", warning=w)

    status = {"code": 0}

    def exit(code: int) -> None:
        status["code"] = code
        if reactor.running:
            reactor.stop()

    loop = SignalLoop(agent, reactor, lambda: load(opts).runtime, exit)
    install_signals(reactor, loop)

    def stopped(_: object) -> None:
        log.info("shutdown complete")

    reactor.addSystemEventTrigger("before", "shutdown", lambda: agent.stop().addCallback(stopped))
    tune_gc()  # start-up objects leave the collector's view; see wanfedtx/gctune.py
    reactor.run()
    return status["code"]


def install_signals(reactor: ReactorLike, loop: SignalLoop) -> None:
    """SIGHUP, SIGINT and SIGTERM go to ``loop`` in the reactor thread (set now and again once
    the reactor runs, since the reactor installs its own SIGINT/SIGTERM handlers)."""

    def on_signal(signum: int, frame: Any) -> None:
        name = SIGNAL_NAMES.get(signum, str(signum))
        reactor.callFromThread(loop.on_signal, name)

    def install() -> None:
        for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)

    signal.signal(signal.SIGHUP, on_signal)
    reactor.callWhenRunning(install)


def stop_started_parts(reactor: ReactorLike, agent: Any, timeout: float = 5.0) -> None:
    """After a failed start: stop what did start (raft's writer thread would keep the process
    alive), without leaving, running the reactor until it is done (``timeout`` at most)."""
    from twisted.internet.defer import DeferredList, maybeDeferred

    agent.gossip.leave_on_stop = False

    def stop() -> None:
        # only the parts that started, last first (the others have nothing to stop)
        running = [child for child in reversed(list(agent)) if child.running]
        d = DeferredList([maybeDeferred(child.stopService) for child in running],
                         consumeErrors=True)
        d.addTimeout(timeout, reactor)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(stop)
    run: Any = reactor.run  # the installed reactor's run takes installSignalHandlers
    run(installSignalHandlers=False)


def startup_error_text(e: BaseException) -> str:
    """One line for an error at start-up (a file names itself: ``OSError`` with its path)."""
    if isinstance(e, OSError) and not isinstance(e, CannotListenError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)
