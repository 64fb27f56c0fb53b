# -*- test-case-name: tests.integration.gateway -*-
"""The gateway as a twisted.application MultiService: data path, admin API, reload timer, watcher.

``GatewayService`` owns the current snapshot and the stats; its children do the IO:

* :class:`DataPathService`: the listening socket(s) and relayed connections, on the ``loop`` path
  (epoll threads, :mod:`wanfedtx.gateway.loop`) or the ``twisted`` path
  (:mod:`wanfedtx.gateway.relay`);
* :class:`AdminService`: the Envoy-like admin API (:mod:`wanfedtx.gateway.admin`);
* :class:`ReloadTimer`: with a routes file, polls its modification time (``reload_interval``) so
  edits apply without a signal (the CLI also reloads on SIGHUP);
* with routes from the agent (:meth:`GatewayService.from_agent`), the
  :class:`~wanfedtx.gateway.agentwatch.AgentWatcher`; the data path and the admin API are added
  once the watches produced the first valid snapshot.

``set_snapshot`` swaps routing atomically; ``reload`` re-reads the routes file and keeps the old
snapshot if the new file is bad. ``stopService`` returns a Deferred that fires once every socket is
closed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Site

from wanfedtx.gateway.admin import AdminRoot
from wanfedtx.gateway.conn import DATA_PATHS, RelaySettings
from wanfedtx.gateway.errors import GatewayListenError, RoutesFileError
from wanfedtx.gateway.loop import RelayLoop, listen_socket
from wanfedtx.gateway.relay import RelayFactory
from wanfedtx.gateway.relaynative import use_native
from wanfedtx.gateway.router import RouteTable
from wanfedtx.gateway.routes import listener_index, load_routes
from wanfedtx.gateway.snapshot import Snapshot, SnapshotInputs, build_snapshot
from wanfedtx.gateway.stats import GatewayStats, merge
from wanfedtx.hostport import join_host_port
from wanfedtx.listening import Connections, TrackingFactory, bound_port
from wanfedtx.netlimits import listen_backlog
from wanfedtx.reactors import ReactorLike
from wanfedtx.services import MultiService, Service

log = Logger(namespace="wanfed.gateway")


class DataPathService(Service):
    """The relay listener(s) of one gateway: ``loop`` workers or a Twisted ``RelayFactory``."""

    def __init__(
        self,
        reactor: ReactorLike,
        address: tuple[str, int],
        table: RouteTable,
        stats: GatewayStats,
        settings: RelaySettings,
        rng: random.Random,
    ) -> None:
        if settings.data_path not in DATA_PATHS:
            raise ValueError(
                f"unknown gateway data path {settings.data_path!r}; use one of "
                + ", ".join(DATA_PATHS)
            )
        self.reactor = reactor
        self.address = address
        self.table = table
        self.stats = stats
        self.settings = settings
        self.rng = rng
        self.factory: RelayFactory | None = None
        self.port: IListeningPort | None = None
        self.loops: list[RelayLoop] = []
        # the twisted path's downstream connections, so stopping waits until every one closed
        self.connections = Connections()

    def set_route_table(self, table: RouteTable) -> None:
        self.table = table
        if self.factory is not None:
            self.factory.set_route_table(table)
        for lp in self.loops:
            lp.set_route_table(table)

    def startService(self) -> None:
        super().startService()
        if self.settings.data_path == "loop":
            workers = max(1, self.settings.workers)
            try:
                sock = listen_socket(self.address)
            except OSError as e:
                raise GatewayListenError(self.address, e.strerror or str(e)) from None
            self.address = (self.address[0], sock.getsockname()[1])
            with sock:  # each worker accepts from its own duplicate of the one socket
                for i in range(workers):
                    lp = RelayLoop(
                        self.reactor,
                        self.address,
                        self.table,
                        self.stats if i == 0 else GatewayStats(),
                        self.settings,
                        random.Random(self.rng.random()),
                        listen_sock=sock.dup(),
                    )
                    self.loops.append(lp)
            for lp in self.loops:
                lp.start()
            return
        host, port = self.address
        self.factory = RelayFactory(
            self.reactor,
            self.table,
            self.stats,
            self.stats.listener(host, port),
            self.settings,
            self.rng,
        )
        self.port = _listen(
            self.reactor, self.address, TrackingFactory(self.factory, self.connections)
        )
        if port == 0:
            real = bound_port(self.port)
            self.address = (host, real)
            self.stats.listeners.pop(f"{host}_0", None)
            self.factory.listener_stats = self.stats.listener(host, real)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        waits: list[defer.Deferred[Any]] = []
        if self.port is not None:
            d = self.port.stopListening()
            if d is not None:
                waits.append(d)
        if self.factory is not None:
            self.factory.close_all()  # each connection's core aborts it (stats stay right)
            waits.append(self.connections.drained())
        for lp in self.loops:
            waits.append(lp.stop())
        # a later start builds fresh listeners and workers
        self.port, self.factory, self.loops = None, None, []
        return defer.gatherResults(waits).addCallback(lambda _: None)


class AdminService(Service):
    """The admin API's listening port; stopping also closes its open (keep-alive) connections."""

    def __init__(self, reactor: IReactorTCP, address: tuple[str, int], root: AdminRoot) -> None:
        self.reactor = reactor
        self.address = address
        self.root = root
        self.port: IListeningPort | None = None
        self.connections = Connections()

    def startService(self) -> None:
        super().startService()
        site = Site(self.root)
        site.noisy = False
        host, port = self.address
        self.port = _listen(
            self.reactor, self.address, TrackingFactory(site, self.connections), "admin API"
        )
        if port == 0:
            self.address = (host, bound_port(self.port))
        # Envoy's start-up line; with -admin-bind <host>:0 it is where to find the kernel's port.
        log.info("admin address: {address}", address=join_host_port(*self.address))

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        d = self.port.stopListening() if self.port is not None else None
        self.port = None
        waits = [d if d is not None else defer.succeed(None),
                 self.connections.close_all(abort=False)]
        return defer.gatherResults(waits).addCallback(lambda _: None)


def _listen(
    reactor: IReactorTCP, address: tuple[str, int], factory: Any, what: str = "gateway"
) -> Any:
    """``listenTCP`` on ``address``; a failure is a :class:`GatewayListenError` (one line)."""
    host, port = address
    try:
        return reactor.listenTCP(port, factory, backlog=listen_backlog(), interface=host)
    except CannotListenError as e:
        err = e.socketError
        reason = getattr(err, "strerror", None) or str(err)
        raise GatewayListenError(address, reason, what) from None


class ReloadTimer(Service):
    """Calls ``check`` every ``interval`` seconds on the injected clock (not at start)."""

    def __init__(self, clock: IReactorTime, interval: float, check: Callable[[], object]) -> None:
        self._call = task.LoopingCall(check)
        self._call.clock = clock
        self.interval = interval

    def startService(self) -> None:
        super().startService()
        self._call.start(self.interval, now=False)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self._call.running:
            self._call.stop()
        return defer.succeed(None)


class GatewayService(MultiService):
    def __init__(
        self,
        reactor: ReactorLike,
        address: tuple[str, int] | None,
        snapshot: Snapshot | None,
        admin: tuple[str, int] | None = None,
        settings: RelaySettings | None = None,
        rng: random.Random | None = None,
        routes_path: str | Path | None = None,
        reload_interval: float | None = 1.0,
        on_fatal: Callable[[str], object] | None = None,
    ) -> None:
        """``on_fatal`` is called with one line when a listener cannot bind (the runner prints
        it and exits non-zero); without it, :class:`GatewayListenError` is raised."""
        super().__init__()
        self.reactor = reactor
        self.on_fatal = on_fatal
        self.on_listening: Callable[[], object] | None = None  # once the relay port listens
        self.watcher: Any = None
        self._address = address
        self._admin_address = admin
        self.settings = settings if settings is not None else RelaySettings()
        self.rng = rng if rng is not None else random.Random()
        self.routes_path = Path(routes_path) if routes_path is not None else None
        self.reload_interval = reload_interval
        self._stats = GatewayStats()
        self.snapshot = snapshot
        self.data_path: DataPathService | None = None
        self.admin: AdminService | None = None
        self._mtime: float | None = None
        if snapshot is not None:
            self._add_listeners(snapshot)
        if self.routes_path is not None and reload_interval:
            ReloadTimer(reactor, reload_interval, self._check_mtime).setServiceParent(self)

    @classmethod
    def from_agent(
        cls,
        reactor: ReactorLike,
        address: tuple[str, int] | None,
        http_base: str,
        proxy_id: str,
        trust_domain: str | None = None,
        token: str = "",
        admin: tuple[str, int] | None = None,
        settings: RelaySettings | None = None,
        on_fatal: Callable[[str], object] | None = None,
    ) -> GatewayService:
        """A gateway whose routes come from the local agent; it listens (on ``address``, or the
        registration's default bind) once the watches produced a valid snapshot. Its trust
        domain comes from the agent's Connect CA roots unless ``trust_domain`` is given."""
        from wanfedtx.gateway.agentwatch import AgentWatcher

        svc = cls(reactor, address, None, admin=admin, settings=settings, reload_interval=None,
                  on_fatal=on_fatal)
        watcher = AgentWatcher(
            reactor, http_base, proxy_id, svc.on_inputs, trust_domain=trust_domain, token=token
        )
        watcher.setServiceParent(svc)
        svc.watcher = watcher
        return svc

    # -- children --------------------------------------------------------------------------

    def _add_listeners(self, snapshot: Snapshot) -> None:
        address = self._address
        if address is None:
            raise ValueError("the gateway needs an address to listen on")
        self.data_path = DataPathService(
            self.reactor, address, self._table(snapshot), self._stats, self.settings, self.rng
        )
        self.data_path.setServiceParent(self)
        if self._admin_address is not None:
            root = AdminRoot(lambda: self._snapshot(), lambda: self.stats)
            self.admin = AdminService(self.reactor, self._admin_address, root)
            self.admin.setServiceParent(self)
        if self.running:
            self._log_listening()

    def on_inputs(self, inputs: SnapshotInputs) -> None:
        """New watch results from the agent: route with them, starting the listeners at first."""
        snapshot = build_snapshot(inputs)
        if self.data_path is not None:
            self.set_snapshot(snapshot)
            return
        if self._address is None:
            default = inputs.binds[0]
            self._address = (default.address, default.port)
        self.snapshot = snapshot
        try:
            self._add_listeners(snapshot)
        except GatewayListenError as e:
            self._fatal(e)

    def _fatal(self, error: GatewayListenError) -> None:
        if self.on_fatal is None:
            raise error
        self.on_fatal(str(error))

    # -- views -----------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if self.data_path is not None:
            return self.data_path.address
        if self._address is None:
            raise ValueError("the gateway's address is not known yet")
        return self._address

    @property
    def admin_address(self) -> tuple[str, int] | None:
        return self.admin.address if self.admin is not None else self._admin_address

    @property
    def factory(self) -> RelayFactory | None:
        return self.data_path.factory if self.data_path is not None else None

    @property
    def loops(self) -> list[RelayLoop]:
        return self.data_path.loops if self.data_path is not None else []

    @property
    def loop(self) -> RelayLoop | None:
        return self.loops[0] if self.loops else None

    @property
    def stats(self) -> GatewayStats:
        """The counters; with several loop workers, a sum of theirs computed now."""
        if len(self.loops) > 1:
            return merge([lp.stats for lp in self.loops])
        return self._stats

    def _snapshot(self) -> Snapshot:
        if self.snapshot is None:
            raise ValueError("the gateway has no snapshot yet")
        return self.snapshot

    # -- routing ---------------------------------------------------------------------------

    def _table(self, snapshot: Snapshot) -> RouteTable:
        return RouteTable(snapshot, listener_index(snapshot, *self.address))

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """New connections route with ``snapshot`` from now on; open ones are not touched."""
        table = self._table(snapshot)
        self.snapshot = snapshot
        if self.data_path is not None:
            self.data_path.set_route_table(table)

    def reload(self) -> bool:
        """SIGHUP: re-read the routes file (on error log it and keep the current snapshot), or
        with routes from the agent, read the registration and the agent's domain again now."""
        if self.routes_path is None:
            if self.watcher is not None:
                log.info("gateway: reloading the registration from the agent")
                self.watcher.refresh()
                return True
            return False
        try:
            self._mtime = _mtime(self.routes_path)
            snap = load_routes(self.routes_path, *self.address)
        except RoutesFileError as e:
            log.error(
                "gateway routes reload failed, keeping the current routes: {error}", error=str(e)
            )
            return False
        self.set_snapshot(snap)
        log.info(
            "gateway routes reloaded from {path}: {clusters} clusters",
            path=str(self.routes_path),
            clusters=len(snap.clusters),
        )
        return True

    def _check_mtime(self) -> None:
        if self.routes_path is None:  # the timer only runs with a routes file
            return
        if _mtime(self.routes_path) != self._mtime:
            self.reload()

    # -- lifecycle -------------------------------------------------------------------------

    def startService(self) -> None:
        if self.routes_path is not None:
            self._mtime = _mtime(self.routes_path)
        try:
            super().startService()
        except GatewayListenError as e:
            self._fatal(e)
            return
        if self.data_path is not None:
            self._log_listening()

    def _log_listening(self) -> None:
        if self.on_listening is not None:
            self.on_listening()
        path = f"{self.settings.data_path} data path"
        if self.settings.data_path == "loop":
            path += ", compiled relay" if use_native(self.settings.loop_relay) else ", Python relay"
        log.info(
            "gateway listening on {host}:{port} ({path})",
            host=self.address[0],
            port=self.address[1],
            path=path,
        )

    def stopService(self) -> defer.Deferred[None]:
        """Stop every child; the Deferred fires once their sockets are closed."""
        d: defer.Deferred[Any] = super().stopService()
        return d.addCallback(lambda _: None)


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None
