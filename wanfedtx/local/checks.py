# -*- test-case-name: tests.unit.agent.test_agent_ae_model,tests.unit.agent.test_agent_local_ae -*-
"""Check runners: TTL, TCP and HTTP checks that feed status updates into the local state.

A :class:`CheckRunners` service watches the local state for added/removed check definitions and
keeps one runner per check. Time and the network come from the injected reactor. Outputs follow
the reference's texts ("TTL expired", "TCP connect <addr>: Success", "HTTP GET <url>: 200 OK
Output: ...").
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from wanfedtx.config.runtime import CheckDefinition
from wanfedtx.local.definitions import check_kind
from wanfedtx.local.state import LocalState
from wanfedtx.reactors import ReactorLike
from wanfedtx.services import Service

log = Logger()

HTTP_OUTPUT_LIMIT = 4096
TTL_EXPIRED = "TTL expired"


class _Runner:
    def __init__(
        self, local: LocalState, definition: CheckDefinition, reactor: ReactorLike
    ) -> None:
        self.local = local
        self.definition = definition
        self.reactor = reactor
        self.timer: IDelayedCall | None = None
        self.stopped = False
        self.inflight: Deferred[Any] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> Deferred[None]:
        self.stopped = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.inflight is not None:
            self.inflight.cancel()
        return succeed(None)

    def update(self, status: str, output: str) -> None:
        if self.stopped:
            return
        try:
            self.local.update_check(self.definition.id, status, output)
        except Exception:
            log.failure("agent: could not update check {check}", check=self.definition.id)


class TTLRunner(_Runner):
    """Critical once ``ttl`` passes without a pass/warn/fail update."""

    def start(self) -> None:
        self.reset()

    def reset(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = self.reactor.callLater(self.definition.ttl, self._expired)

    def _expired(self) -> None:
        self.timer = None
        log.warn("agent: Check TTL expired: {check}", check=self.definition.id)
        self.update("critical", TTL_EXPIRED)

    def set_status(self, status: str, output: str) -> None:
        self.reset()
        self.update(status, output)


class _IntervalRunner(_Runner):
    def start(self) -> None:
        self.timer = self.reactor.callLater(0, self._tick)

    def _tick(self) -> None:
        self.timer = None
        d = self.probe()
        self.inflight = d

        def done(result: tuple[str, str]) -> None:
            self.inflight = None
            self.update(*result)
            if not self.stopped:
                self.timer = self.reactor.callLater(self.definition.interval, self._tick)

        def cancelled(failure: Any) -> None:
            self.inflight = None

        d.addCallbacks(done, cancelled)

    def probe(self) -> Deferred[tuple[str, str]]:
        raise NotImplementedError


class TCPRunner(_IntervalRunner):
    def probe(self) -> Deferred[tuple[str, str]]:
        addr = self.definition.tcp
        host, _, port = addr.rpartition(":")
        host = host.strip("[]")
        try:
            endpoint = HostnameEndpoint(
                self.reactor, host, int(port), timeout=self.definition.timeout
            )
        except ValueError:
            return succeed(("critical", f"dial tcp {addr}: invalid address"))
        d: Deferred[Any] = endpoint.connect(Factory.forProtocol(Protocol))

        def ok(proto: Protocol) -> tuple[str, str]:
            if proto.transport is not None:
                proto.transport.loseConnection()
            return "passing", f"TCP connect {addr}: Success"

        def bad(failure: Any) -> tuple[str, str]:
            return "critical", f"dial tcp {addr}: {failure.getErrorMessage()}"

        return d.addCallbacks(ok, bad)


class HTTPRunner(_IntervalRunner):
    def probe(self) -> Deferred[tuple[str, str]]:
        import treq
        from twisted.web.client import Agent

        definition = self.definition
        url = definition.http
        method = definition.method
        agent = Agent(self.reactor, connectTimeout=definition.timeout)
        headers = Headers(
            {k: [v] if isinstance(v, str) else list(v) for k, v in definition.header.items()}
        )
        client = treq.client.HTTPClient(agent)
        d: Deferred[Any] = client.request(method, url, headers=headers, timeout=definition.timeout)

        def got(response: Any) -> Deferred[tuple[str, str]]:
            def body(data: bytes) -> tuple[str, str]:
                text = data[:HTTP_OUTPUT_LIMIT].decode("utf-8", "replace")
                code = response.code
                phrase = response.phrase.decode("ascii", "replace")
                output = f"HTTP {method} {url}: {code} {phrase} Output: {text}"
                if 200 <= code < 300:
                    return "passing", output
                if code == 429:
                    return "warning", output
                return "critical", output

            d: Deferred[bytes] = treq.content(response)
            return d.addCallback(body)

        def bad(failure: Any) -> tuple[str, str]:
            return "critical", f"{method} {url}: {failure.getErrorMessage() or failure.type}"

        return d.addCallback(got).addErrback(bad)


class CheckRunners(Service):
    """One runner per local check definition, started and stopped with the agent."""

    def __init__(self, local: LocalState, reactor: ReactorLike) -> None:
        self.local = local
        self.reactor = reactor
        self.runners: dict[str, _Runner] = {}
        local.on_check_change(self._changed)

    def _make(self, definition: CheckDefinition) -> _Runner:
        kind = check_kind(definition)
        if kind == "ttl":
            return TTLRunner(self.local, definition, self.reactor)
        if kind == "tcp":
            return TCPRunner(self.local, definition, self.reactor)
        return HTTPRunner(self.local, definition, self.reactor)

    def _changed(self, check_id: str, definition: CheckDefinition | None) -> None:
        old = self.runners.pop(check_id, None)
        if old is not None:
            old.stop()
        if definition is not None:
            runner = self._make(definition)
            self.runners[check_id] = runner
            if self.running:
                runner.start()

    def startService(self) -> None:
        super().startService()
        for runner in self.runners.values():
            runner.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for runner in self.runners.values():
            runner.stop()
        return succeed(None)

    def ttl_update(self, check_id: str, status: str, output: str) -> None:
        """``/v1/agent/check/pass|warn|fail/<id>``: only TTL checks accept these."""
        runner = self.runners.get(check_id)
        if not isinstance(runner, TTLRunner):
            from wanfedtx.catalog.errors import NotFoundError

            raise NotFoundError(f'CheckID "{check_id}" does not have associated TTL')
        runner.set_status(status, output)
