# -*- test-case-name: tests.unit.connect.test_connect_ca_server -*-
"""The Connect CA on one server: raft type 13, the ``ConnectCA.*`` RPCs, the leader routine.

:class:`ConnectCAServer` is a ``MultiService`` child of the agent on every server; without
``connect.enabled`` its RPCs answer ``Connect must be enabled in order to use this endpoint``
and no leader routine runs. It installs the type-13 handler on the catalog FSM (before raft
replays its log), adds the ``ConnectCA.*`` handlers to the catalog's local RPC table and, through
:meth:`register_into`, to the :8300 endpoint table. Its child ``leader``
(:class:`~wanfedtx.catalog.leader.LeaderServices`) runs :class:`PrimaryCAInitializer` while
this server leads in the primary datacenter (the reference's ``initializeCA``) with
:class:`~wanfedtx.connect.routines.RootPruning`, and
:class:`~wanfedtx.connect.secondary.SecondaryCARootWatch` with
:class:`~wanfedtx.connect.routines.IntermediateRenewal` in a secondary.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.catalog.leader import LeaderServices
from wanfedtx.catalog.server import ICatalogServer
from wanfedtx.connect import ca
from wanfedtx.connect import fsm as ca_fsm
from wanfedtx.connect.endpoints import ConnectCAEndpoints, provider_state_id
from wanfedtx.connect.errors import CAError
from wanfedtx.connect.routines import IntermediateRenewal, RootPruning
from wanfedtx.connect.secondary import SecondaryCARootWatch
from wanfedtx.fsm.commands import MessageType
from wanfedtx.fsm.errors import LeadershipError
from wanfedtx.services import MultiService, Service

log = Logger(namespace="agent.server.connect")

RETRY_INTERVAL = 5.0

#: The server's base provider config; the user's ``ca_config`` keys are merged over it.
BASE_PROVIDER_CONFIG: Mapping[str, Any] = {
    "RotationPeriod": "2160h",
    "LeafCertTTL": "72h",
    "IntermediateCertTTL": "8760h",
}



def initial_config(user: Mapping[str, Any]) -> dict[str, Any]:
    """The ``CAConfiguration`` written at first bootstrap from ``connect.ca_config``."""
    provider = {**BASE_PROVIDER_CONFIG, **{k: v for k, v in user.items() if k != "ClusterID"}}
    return {
        "ClusterID": str(user.get("ClusterID") or uuid.uuid4()),
        "Provider": "consul",
        "Config": provider,
        "State": None,
        "ForceWithoutCrossSigning": False,
        "ModifyIndex": 0,
    }


class PrimaryCAInitializer(Service):
    """Leader routine of the primary: store the config, the provider state (root key and
    certificate) and the active root, each only if missing; retries every
    :data:`RETRY_INTERVAL` seconds after an error."""

    def __init__(self, endpoints: Endpoints, user_config: Mapping[str, Any],
                 clock: IReactorTime) -> None:
        self.setName("CA initialization")
        self.endpoints = endpoints
        self.user_config = user_config
        self.clock = clock
        self._task: Deferred[None] | None = None
        self._retry: IDelayedCall | None = None
        #: Fires each time a run finished without error (tests wait on it).
        self.initialized = False

    def startService(self) -> None:
        super().startService()
        self._run()

    def _run(self) -> None:
        self._retry = None
        task = Deferred.fromCoroutine(self.initialize())
        self._task = task
        task.addErrback(self._failed)

    def _failed(self, f: Failure) -> None:
        if f.check(CancelledError):
            return
        if f.check(LeadershipError):
            log.info("CA: leadership lost during initialization: {error}",
                     error=f.getErrorMessage())
            return
        log.error("CA: failed to initialize the primary datacenter CA, will retry: {error}",
                  error=f.getErrorMessage())
        if self.running:
            self._retry = self.clock.callLater(RETRY_INTERVAL, self._run)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        task, self._task = self._task, None
        if task is None or task.called:
            return succeed(None)
        task.cancel()
        return task.addBoth(lambda _: None)

    async def _apply(self, body: dict[str, Any]) -> Any:
        return await self.endpoints._apply(MessageType.CONNECT_CA, body)

    async def initialize(self) -> None:
        state = self.endpoints.state
        _, config = state.ca_config(None)
        if config is None:
            await self._apply({"Op": ca_fsm.OP_SET_CONFIG,
                               "Config": initial_config(self.user_config)})
            _, config = state.ca_config(None)
        if config is None:
            raise CAError("the CA configuration was not stored")
        cluster_id = str(config["ClusterID"])
        provider_config = config.get("Config") or {}
        pid = provider_state_id(provider_config, True)
        row = state.ca_provider_state(pid)
        if row is None or not row.get("RootCert"):
            if provider_config.get("RootCert"):
                key_pem = str(provider_config.get("PrivateKey") or "")
                root_pem = str(provider_config["RootCert"])
            else:
                serial = int(await self._apply({"Op": ca_fsm.OP_INCREMENT_SERIAL}))
                now = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)
                key_pem, root_pem = ca.generate_root(
                    cluster_id, serial, now, str(provider_config.get("PrivateKey") or ""))
            await self._apply({"Op": ca_fsm.OP_SET_PROVIDER_STATE, "ProviderState": {
                "ID": pid, "PrivateKey": key_pem, "RootCert": root_pem, "IntermediateCert": ""}})
            row = state.ca_provider_state(pid)
        if row is None:
            raise CAError("the CA provider state was not stored")
        root = ca.root_row(str(row["RootCert"]), cluster_id)
        active = state.ca_active_root()
        if active is not None:
            if active["ID"] != root["ID"]:
                raise CAError(
                    f'stored CA root "{active["ID"]}" is not the active root ({root["ID"]})')
            self.initialized = True
            return
        cas = state.max_index("connect-ca-roots")
        ok = await self._apply({"Op": ca_fsm.OP_SET_ROOTS, "Index": cas, "Roots": [root]})
        if not ok:
            raise CAError("could not atomically update roots")
        log.info("initialized primary datacenter CA with provider: provider=consul "
                 "trust_domain={td}", td=ca.trust_domain(cluster_id))
        self.initialized = True


class ConnectCAServer(MultiService):
    """The Connect CA on one server (see module)."""

    def __init__(self, catalog: ICatalogServer, primary_datacenter: str,
                 user_config: Mapping[str, Any], clock: IReactorTime,
                 enabled: bool = True, replication_token: str = "") -> None:
        super().__init__()
        self.enabled = enabled
        #: ``acl.tokens.replication``: a secondary sends it with ``SignIntermediate``
        #: (operator:write in the primary)
        self.replication_token = replication_token
        self.catalog = catalog
        self.datacenter = catalog.datacenter
        self.primary_datacenter = primary_datacenter or catalog.datacenter
        self.user_config = dict(user_config)
        self.clock = clock
        ca_fsm.install(catalog.fsm)
        self.endpoints = ConnectCAEndpoints(catalog.endpoints, self.primary_datacenter,
                                            enabled=enabled)
        catalog.handlers.update(self.endpoints.handlers())
        self.leader = LeaderServices(catalog.consensus, self.build_routines, name="ca-leader")
        self.leader.setServiceParent(self)

    @property
    def is_primary(self) -> bool:
        return self.datacenter == self.primary_datacenter

    def register_into(self, registry: Any) -> None:
        """Add the ``ConnectCA.*`` handlers to the :8300 endpoint table."""
        self.endpoints.register_into(registry)

    def wake_routines(self) -> None:
        """A server of another datacenter joined the WAN pool: the secondary's roots watch
        retries now instead of after its backoff."""
        for routine in self.leader.routines:
            if isinstance(routine, SecondaryCARootWatch):
                routine.wake()

    def build_routines(self) -> list[Service]:
        if not self.enabled:
            return []
        if self.is_primary:
            return [PrimaryCAInitializer(self.catalog.endpoints, self.user_config, self.clock),
                    RootPruning(self.endpoints, self.clock)]
        base = initial_config(self.user_config)
        watch = SecondaryCARootWatch(self.catalog.endpoints, self.primary_datacenter, base,
                                     self.clock, token=self.replication_token)
        return [watch, IntermediateRenewal(watch, self.clock)]
