# -*- test-case-name: tests.unit.agent.test_agent_lifecycle,tests.integration.agent -*-
"""What a running agent does on SIGHUP, SIGINT and SIGTERM, as Consul's command loop.

* SIGHUP reloads (:func:`reload_agent`): the configuration is read again from the same sources
  and what Consul reloads is applied: the log level (a bad one keeps the old level and logs
  ``Invalid log level: ...``), the services and checks from config files (their check statuses
  kept), the TLS certificates, keys and CA (``Failed reloading tls configuration: ...``) and
  ``primary_gateways``. Ports, addresses, datacenter, node name, server mode and data dir need a
  restart. The process never stops on SIGHUP.
* SIGINT leaves gracefully unless ``skip_leave_on_interrupt``; SIGTERM leaves gracefully if
  ``leave_on_terminate`` (defaults: clients leave on both, servers on neither). Graceful: ``Leave``
  then exit 0 (``Graceful exit completed``), a second signal or 15 s exit 1 at once. Not
  graceful: ``Graceful shutdown disabled. Exiting``, the agent stops without leaving (its peers
  see it fail) and the process exits 1.

:class:`SignalLoop` holds the decisions and is driven by the runner's signal handlers
(``wanfed agent``, ``twistd -n wanfed``); ``exit(code)`` stops the reactor with that code.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wanfedtx.agent.catalog_services import _check_dict, service_dict
from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.local.definitions import decode_check, decode_service
from wanfedtx.local.state import LocalState
from wanfedtx.logs import UnknownLogLevel, set_level
from wanfedtx.tls.errors import TLSError

log = Logger(namespace="agent")
ui = Logger(namespace="ui")

GRACEFUL_TIMEOUT = 15.0
SIGNAL_NAMES: dict[int, str] = {
    signal.SIGHUP: "hangup",
    signal.SIGINT: "interrupt",
    signal.SIGTERM: "terminated",
}


def graceful(config: RuntimeConfig, signame: str) -> bool:
    """Whether ``signame`` (``interrupt``/``terminated``) leaves gracefully."""
    if signame == "interrupt":
        return not config.skip_leave_on_int
    return config.leave_on_term


def _config_services(local: LocalState, config: RuntimeConfig) -> tuple[list[Any], list[Any]]:
    services = [decode_service(service_dict(s), f"services[{i}]")
                for i, s in enumerate(config.services)]
    checks = [decode_check(_check_dict(c), f"checks[{i}]") for i, c in enumerate(config.checks)]
    return services, checks


def reload_local(local: LocalState, old: RuntimeConfig, new: RuntimeConfig) -> None:
    """The config-file services and checks of ``new`` replace those of ``old`` (services added
    through the HTTP API stay); a check that stays keeps its status and output."""
    old_services, old_checks = _config_services(local, old)
    services, checks = _config_services(local, new)
    kept = {cid: (c.check["Status"], c.check["Output"])
            for cid, c in local.checks.items() if not c.deleted}
    new_sids = {s.service["ID"] for s in services}
    new_cids = {c.id for c in checks}
    for reg in old_services:
        sid = reg.service["ID"]
        if sid not in new_sids and sid in local.live_services():
            local.remove_service(sid)
    for check in old_checks:
        if check.id not in new_cids and check.id in local.live_checks():
            local.remove_check(check.id)
    tokens = {str(s.id or s.name): s.token for s in new.services}
    for reg in services:
        local.add_service(reg, tokens.get(str(reg.service["ID"]), ""))
    for check in checks:
        local.add_check(check)
    for cid, (status, output) in kept.items():
        if cid in local.live_checks():
            local.update_check(cid, status, output)


def reload_agent(agent: Any, new: RuntimeConfig) -> list[str]:
    """Apply the reloadable part of ``new`` to ``agent``; returns the errors (one line each),
    the rest is applied anyway."""
    errors: list[str] = []
    old: RuntimeConfig = agent.config
    try:
        set_level(new.log_level)
    except UnknownLogLevel:
        errors.append(
            f"Invalid log level: {new.log_level}. Valid log levels are: "
            "[TRACE DEBUG INFO WARN ERR ERROR]"
        )
        new = _evolve(new, log_level=old.log_level)
    local = agent.local_state()
    if local is not None:
        try:
            reload_local(local, old, new)
        except Exception as e:  # a definition the agent refuses (400 texts)
            errors.append(f"Failed reloading services and checks: {e}")
            new = _evolve(new, services=old.services, checks=old.checks)
    if agent.tls is not None:
        try:
            agent.tls.replace_settings(new.tls_settings())
        except TLSError as e:
            errors.append(f"Failed reloading tls configuration: {e}")
    if agent.primary_join is not None:
        agent.primary_join.primary_gateways = list(new.primary_gateways)
    agent.config = _evolve(
        old,
        log_level=new.log_level,
        services=new.services,
        checks=new.checks,
        primary_gateways=new.primary_gateways,
        ca_file=new.ca_file,
        cert_file=new.cert_file,
        key_file=new.key_file,
    )
    return errors


def _evolve(config: RuntimeConfig, **changes: Any) -> RuntimeConfig:
    evolved: RuntimeConfig = attrs.evolve(config, **changes)
    return evolved


class SignalLoop:
    """Consul's command loop for one agent: see the module docstring.

    ``load`` reads the configuration again (raises ``ConfigError``); ``leave`` returns a
    Deferred that fires once the agent left its pools; ``exit(code)`` ends the process.
    """

    def __init__(
        self,
        agent: Any,
        clock: IReactorTime,
        load: Callable[[], RuntimeConfig],
        exit: Callable[[int], object],
        graceful_timeout: float = GRACEFUL_TIMEOUT,
    ) -> None:
        self.agent = agent
        self.clock = clock
        self.load = load
        self.exit = exit
        self.graceful_timeout = graceful_timeout
        self.stopping = False
        self.code: int | None = None
        # ``PUT /v1/agent/reload`` runs the same reload as SIGHUP
        agent.reload_config = self.reload

    def on_signal(self, signame: str) -> None:
        ui.info("==> Caught signal: {sig}", sig=signame, ui=True)
        if signame == "hangup":
            if not self.stopping:
                self.reload()
            return
        if self.stopping:
            ui.info("==> Caught second signal, Exiting", ui=True)
            self._exit(1)
            return
        self.stopping = True
        if not graceful(self.agent.config, signame):
            ui.info("==> Graceful shutdown disabled. Exiting", ui=True)
            self.agent.gossip.leave_on_stop = False
            self._exit(1)
            return
        ui.info("==> Gracefully shutting down agent...", ui=True)
        timer = self.clock.callLater(self.graceful_timeout, self._timed_out)
        d: Deferred[None] = Deferred.fromCoroutine(self.agent.gossip.leave())

        def left(_: object) -> None:
            if timer.active():
                timer.cancel()
            if self.code is None:
                ui.info("==> Graceful exit completed", ui=True)
                self._exit(0)

        def failed(f: Any) -> None:
            log.error("Error on leave: {error}", error=f.getErrorMessage())
            left(None)

        d.addCallbacks(left, failed)

    def _timed_out(self) -> None:
        if self.code is None:
            ui.info("==> Timeout on graceful leave. Exiting", ui=True)
            self._exit(1)

    def _exit(self, code: int) -> None:
        if self.code is not None:
            return
        self.code = code
        self.exit(code)

    def reload(self) -> list[str]:
        """SIGHUP: ``Reloading configuration...``; errors logged ``Failed to reload configs``."""
        ui.info("==> Reloading configuration...", ui=True)
        try:
            new = self.load()
        except Exception as e:  # ConfigError, FlagError, an unreadable file: one line
            errors = [str(e)]
        else:
            errors = reload_agent(self.agent, new)
        for error in errors:
            log.error("Failed to reload configs: {error}", error=error)
        return errors
