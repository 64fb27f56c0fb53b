"""The gateway as a twisted.application Service: relay listener, admin site, routes reloading.

``GatewayService`` owns the listening sockets, the current snapshot and its route table, the stats,
and (with the ``splice`` data path) the relay thread. ``set_snapshot`` swaps routing atomically;
``reload`` re-reads the routes file and keeps the old snapshot if the new file is bad. With a
routes file, its modification time is polled (``reload_interval``) so edits apply without a signal;
the CLI also reloads on SIGHUP. ``stopService`` fires once the sockets are closed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.server import Site

from wanfedtx.gateway.admin import AdminRoot
from wanfedtx.gateway.errors import RoutesFileError
from wanfedtx.gateway.loop import RelayLoop
from wanfedtx.gateway.relay import RelayFactory, RelaySettings
from wanfedtx.gateway.router import RouteTable
from wanfedtx.gateway.routes import listener_index, load_routes
from wanfedtx.gateway.snapshot import Snapshot
from wanfedtx.gateway.splice import SpliceRelay
from wanfedtx.gateway.stats import GatewayStats, merge
from wanfedtx.netlimits import listen_backlog

log = Logger(namespace="wanfed.gateway")


class GatewayService(Service):
    def __init__(
        self,
        reactor: Any,
        address: tuple[str, int],
        snapshot: Snapshot,
        admin: tuple[str, int] | None = None,
        settings: RelaySettings | None = None,
        rng: random.Random | None = None,
        routes_path: str | Path | None = None,
        reload_interval: float | None = 1.0,
    ) -> None:
        self.reactor = reactor
        self.address = address
        self.admin_address = admin
        self.settings = settings if settings is not None else RelaySettings()
        self.rng = rng if rng is not None else random.Random()
        self.routes_path = Path(routes_path) if routes_path is not None else None
        self.reload_interval = reload_interval
        self._stats = GatewayStats()
        self.snapshot = snapshot
        self.splice: SpliceRelay | None = None
        self.factory: RelayFactory | None = None
        self.loop: RelayLoop | None = None
        self.loops: list[RelayLoop] = []
        self.port: IListeningPort | None = None
        self.admin_port: IListeningPort | None = None
        self._mtime: float | None = None
        self._watch: task.LoopingCall | None = None

    @property
    def stats(self) -> GatewayStats:
        """The counters; with several loop workers, a sum of theirs computed now."""
        if len(self.loops) > 1:
            return merge([lp.stats for lp in self.loops])
        return self._stats

    # -- routing ---------------------------------------------------------------------------

    def _table(self, snapshot: Snapshot) -> RouteTable:
        return RouteTable(snapshot, listener_index(snapshot, *self.address))

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """New connections route with ``snapshot`` from now on; open ones are not touched."""
        table = self._table(snapshot)
        self.snapshot = snapshot
        if self.factory is not None:
            self.factory.set_route_table(table)
        for lp in self.loops:
            lp.set_route_table(table)

    def reload(self) -> bool:
        """Re-read the routes file; on error log it and keep the current snapshot."""
        if self.routes_path is None:
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
        if self.routes_path is None:  # the watch only runs with a routes file
            return
        if _mtime(self.routes_path) != self._mtime:
            self.reload()

    # -- lifecycle -------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        host, port = self.address
        if self.settings.data_path == "loop":
            workers = max(1, self.settings.workers)
            for i in range(workers):
                lp = RelayLoop(
                    self.reactor,
                    self.address,
                    self._table(self.snapshot),
                    self._stats if i == 0 else GatewayStats(),
                    self.settings,
                    random.Random(self.rng.random()),
                    reuse_port=workers > 1,
                )
                self.address = lp.address  # the first one fixes the port for the others
                self.loops.append(lp)
            self.loop = self.loops[0]
            for lp in self.loops:
                lp.start()
        else:
            self._start_twisted(host, port)
        self._start_admin_and_watch()

    def _start_twisted(self, host: str, port: int) -> None:
        if self.settings.data_path == "splice":
            self.splice = SpliceRelay(
                self.reactor,
                idle_timeout=self.settings.idle_timeout,
                pipe_size=self.settings.pipe_size,
            )
            self.splice.start()
        lstats = self._stats.listener(host, port)
        self.factory = RelayFactory(
            self.reactor,
            self._table(self.snapshot),
            self._stats,
            lstats,
            self.settings,
            self.rng,
            self.splice,
        )
        self.port = self.reactor.listenTCP(
            port, self.factory, backlog=listen_backlog(), interface=host
        )
        if port == 0:
            real = self.port.getHost().port  # type: ignore[union-attr]
            self.address = (host, real)
            self._stats.listeners.pop(f"{host}_0", None)
            self.factory.listener_stats = self._stats.listener(host, real)

    def _start_admin_and_watch(self) -> None:
        if self.admin_address is not None:
            root = AdminRoot(lambda: self.snapshot, lambda: self.stats)
            site = Site(root)  # type: ignore[no-untyped-call]
            site.noisy = False
            ah, ap = self.admin_address
            self.admin_port = self.reactor.listenTCP(
                ap, site, backlog=listen_backlog(), interface=ah
            )
            if ap == 0:
                self.admin_address = (ah, self.admin_port.getHost().port)  # type: ignore[union-attr]
        if self.routes_path is not None and self.reload_interval:
            self._mtime = _mtime(self.routes_path)
            self._watch = task.LoopingCall(self._check_mtime)
            self._watch.clock = self.reactor
            self._watch.start(self.reload_interval, now=False)
        log.info(
            "gateway listening on {host}:{port} ({path} data path)",
            host=self.address[0],
            port=self.address[1],
            path=self.settings.data_path,
        )

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        waits: list[defer.Deferred[Any]] = []
        for p in (self.port, self.admin_port):
            if p is not None:
                d = p.stopListening()
                if d is not None:
                    waits.append(d)
        if self.factory is not None:
            self.factory.close_all()
            waits.append(self._connections_closed(self.factory))
        if self.splice is not None:
            waits.append(self.splice.stop())
        for lp in self.loops:
            waits.append(lp.stop())
        return defer.gatherResults(waits).addCallback(lambda _: None)

    def _connections_closed(self, factory: RelayFactory) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()

        def check(tries: int) -> None:
            if not factory.active or tries > 200:
                d.callback(None)
            else:
                self.reactor.callLater(0.01, check, tries + 1)

        check(0)
        return d


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None
