"""twistd plugin: ``twistd -n wanfed --config a.hcl --config b.hcl [--config-dir DIR] [...]``.

Loads the configuration exactly as ``wanfed agent`` does (files and directories in the order
given, then the override flags) and runs the same ``Agent`` service. A config, TLS, file or
listener error at start-up prints one line and exits 1. SIGHUP reloads; SIGINT/SIGTERM leave as
``leave_on_terminate``/``skip_leave_on_interrupt`` say, as with ``wanfed agent``. Logs
are Consul-style lines at the configured ``log_level`` (JSON with ``log_json``), written where
twistd would write them (stdout with ``-n``, else ``--logfile`` or ``twistd.log``); ``--logger``
or ``--syslog`` hand logging back to twistd.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


def _bool_flags() -> list[list[Any]]:
    from wanfedtx.agent.flags import FLAGS

    return [[f.name, None, f.help] for f in FLAGS if f.kind == "bool"]


def _value_flags() -> list[list[Any]]:
    from wanfedtx.agent.flags import FLAGS

    return [[f.name, None, None, f.help] for f in FLAGS if f.kind in ("str", "int")]


class Options(usage.Options):
    synopsis = "[--config FILE ...] [--config-dir DIR ...] [--dev] [agent flags]"
    longdesc = "Run a wanfed agent (WAN federation via mesh gateways) under twistd."
    optFlags = [["dev", None, "Starts the agent in development mode."], *_bool_flags()]
    optParameters = [
        ["config-format", None, None, "Config files are in this format (hcl or json)."],
        *_value_flags(),
    ]

    def __init__(self) -> None:
        super().__init__()
        self["config_paths"] = []
        self["lists"] = {}

    def opt_config(self, path: str) -> None:
        """Path to a config file (HCL or JSON). Can be given several times."""
        self["config_paths"].append(path)

    def opt_config_dir(self, path: str) -> None:
        """Directory of .hcl/.json config files, read in lexical order. Repeatable."""
        self["config_paths"].append(path)

    def opt_config_file(self, path: str) -> None:
        """Same as --config (Consul's spelling)."""
        self["config_paths"].append(path)

    def _list(self, name: str, value: str) -> None:
        self["lists"].setdefault(name, []).append(value)

    def opt_primary_gateway(self, value: str) -> None:
        """Address of a mesh gateway in the primary datacenter (host:port). Repeatable."""
        self._list("primary-gateway", value)

    def opt_retry_join(self, value: str) -> None:
        """Address of an agent to join at start time with retries. Repeatable."""
        self._list("retry-join", value)

    def opt_retry_join_wan(self, value: str) -> None:
        """Address of an agent to join -wan at start time with retries. Repeatable."""
        self._list("retry-join-wan", value)

    def opt_join(self, value: str) -> None:
        """Address of an agent to join at start time. Repeatable."""
        self._list("join", value)

    def opt_join_wan(self, value: str) -> None:
        """Address of an agent to join -wan at start time. Repeatable."""
        self._list("join-wan", value)

    def opt_node_meta(self, value: str) -> None:
        """Node metadata key:value. Repeatable."""
        self._list("node-meta", value)


@implementer(IServiceMaker, IPlugin)
class WanfedServiceMaker:
    tapname = "wanfed"
    description = "WAN federation via mesh gateways: a Consul-compatible agent."
    options = Options

    def makeService(self, options: Options) -> Any:
        from twisted.internet import reactor

        from wanfedtx.agent.agent import Agent
        from wanfedtx.agent.flags import FLAGS, FlagError, flags_to_config
        from wanfedtx.agent.lifecycle import SignalLoop
        from wanfedtx.cli.agent import STARTUP_ERRORS, install_signals, startup_error_text
        from wanfedtx.config import ConfigError, LoadOptions, load
        from wanfedtx.logfile import LogFileSettings
        from wanfedtx.logs import configure_twistd

        values: dict[str, Any] = {}
        try:
            for f in FLAGS:
                if f.kind == "bool":
                    values[f.name] = True if options[f.name] else None
                elif f.kind == "int":
                    raw = options[f.name]
                    values[f.name] = None if raw is None else int(raw)
                elif f.kind in ("list", "map"):
                    values[f.name] = options["lists"].get(f.name, [])
                else:
                    values[f.name] = options[f.name]
            opts = LoadOptions(
                config_files=tuple(options["config_paths"]),
                config_format=options["config-format"],
                dev=bool(options["dev"]),
                flags=flags_to_config(values),
            )
            result = load(opts)
            agent = Agent(result.runtime, reactor)
            agent.request_shutdown = reactor.stop  # PUT /v1/agent/leave ends twistd
            configure_twistd(result.runtime.log_level, result.runtime.log_json,
                             LogFileSettings.from_runtime(result.runtime))
            from twisted.logger import Logger

            log = Logger(namespace="agent")
            for warning in result.warnings:
                log.warn("{warning}", warning=warning)
        except (ConfigError, FlagError, ValueError, *STARTUP_ERRORS) as e:
            print(f"twistd wanfed: {startup_error_text(e)}", file=sys.stderr)
            raise SystemExit(1) from None
        # Signals as `wanfed agent` (the exit status stays twistd's own)
        loop = SignalLoop(agent, reactor, lambda: load(opts).runtime, lambda code: reactor.stop())
        install_signals(reactor, loop)
        from wanfedtx.cli.twistd import TwistdRoot
        from wanfedtx.logs import twistd_log_observer

        try:
            observer = twistd_log_observer(getattr(options, "parent", None) or {})
        except OSError as e:  # log_file cannot be created
            print(f"twistd wanfed: Failed to setup logging: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        return TwistdRoot(agent, observer)


serviceMaker = WanfedServiceMaker()
