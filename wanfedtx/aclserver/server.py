# -*- test-case-name: tests.unit.acl.test_acl_endpoints -*-
"""ACLs on one server: raft handlers, the ``ACL.*`` endpoints, the resolver, the leader routine.

:class:`ACLServer` is a ``MultiService`` child of the agent on servers (beside federation
states). It installs the ACL raft handlers on the catalog's FSM, adds the ``ACL.*`` handlers to
the catalog's local RPC table and (``register_into``) to the :8300 table, and gives the catalog's
endpoints the resolver they authorize requests with. While this server leads the primary
datacenter, :class:`InitializeACLs` runs once per term, as Consul's ``initializeACLs``: create
or refresh the builtin ``global-management`` policy, create the initial management token from
``acl.tokens.initial_management`` (as the bootstrap while bootstrap is still possible), and
create the anonymous token. In a secondary, :class:`~wanfedtx.aclserver.replication.ACLReplicator`
copies the primary's policies and global tokens with ``acl.tokens.replication``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.acl import enforce, model
from wanfedtx.acl.enforce import GuardedHandlers
from wanfedtx.acl.remote import RemoteResolver
from wanfedtx.acl.resolver import LocalResolver
from wanfedtx.aclserver.endpoints import ACLEndpoints, rfc3339
from wanfedtx.aclserver.reaper import REAP_INTERVAL, TokenReaper
from wanfedtx.aclserver.replication import REPLICATION_INTERVAL, ACLReplicator, initial_status
from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.catalog.leader import LeaderServices
from wanfedtx.catalog.server import ICatalogServer
from wanfedtx.fsm.commands import MessageType
from wanfedtx.fsm.errors import LeadershipError
from wanfedtx.services import MultiService, Service

log = Logger(namespace="agent.server.acl")


INIT_RETRY_FIRST = 0.5  # seconds before the second attempt of initialize_acls
INIT_RETRY_MAX = 10.0

async def initialize_acls(endpoints: Endpoints, initial_management: str) -> None:
    """Consul's ``initializeACLs`` for the primary's leader (idempotent)."""
    state = endpoints.state
    now = rfc3339(float(endpoints.clock.seconds()))
    builtin = model.global_management_policy()
    _, existing = state.acl_policy_get(None, model.GLOBAL_MANAGEMENT_ID)
    if existing is None or existing.get("Rules") != builtin["Rules"]:
        if existing is not None:  # keep a rename
            builtin["Name"] = existing["Name"]
            builtin["Hash"] = model.policy_hash(builtin)
        await endpoints._apply(MessageType.ACL_POLICY_SET, {"Policies": [builtin]})
        log.info("acl: Created ACL 'global-management' policy")
    if initial_management:
        _, found = state.acl_token_get_by_secret(None, initial_management)
        if found is None:
            accessor = model.new_uuid()
            token = model.make_token(
                accessor,
                initial_management,
                model.MASTER_DESCRIPTION,
                [model.GLOBAL_MANAGEMENT_ID],
                now,
            )
            if not state.acl_bootstrap_index():
                await endpoints._apply(MessageType.ACL_BOOTSTRAP, {"Token": token, "Reset": False})
                log.info("acl: Bootstrapped ACL master token from configuration")
            else:
                await endpoints._apply(MessageType.ACL_TOKEN_SET, {"Tokens": [token]})
                log.info("acl: Created ACL master token from configuration")
    _, anonymous = state.acl_token_get(None, model.ANONYMOUS_ACCESSOR)
    if anonymous is None:
        await endpoints._apply(MessageType.ACL_TOKEN_SET, {"Tokens": [model.anonymous_token(now)]})
        log.info("acl: Created ACL anonymous token from configuration")


class InitializeACLs(Service):
    """Leader routine (primary only): :func:`initialize_acls` once per term, retried (0.5 s,
    doubling up to 10 s) until it succeeds, as Consul's leader retries establishing leadership:
    an attempt that fails (a raft apply refused while the new term is not ready, a timeout
    under load) must not leave the datacenter without its anonymous token for the whole term."""

    def __init__(self, endpoints: Endpoints, initial_management: str) -> None:
        self.setName("initialize ACLs")
        self.endpoints = endpoints
        self.initial_management = initial_management
        self._task: Deferred[None] | None = None
        #: Fires after the first successful run, or when leadership is lost (tests wait on it).
        self.done: Deferred[None] = Deferred()

    def startService(self) -> None:
        super().startService()
        task = Deferred.fromCoroutine(self._run())
        self._task = task
        task.addErrback(self._failed)
        task.addBoth(lambda _: self.done.callback(None) if not self.done.called else None)

    async def _run(self) -> None:
        delay = INIT_RETRY_FIRST
        while True:
            try:
                await initialize_acls(self.endpoints, self.initial_management)
                return
            except (LeadershipError, CancelledError):
                raise
            except Exception as exc:
                log.warn("acl: failed to initialize ACLs, retrying in {delay}s: {error}",
                         delay=delay, error=str(exc) or repr(exc))
            await deferLater(self.endpoints.clock, delay, lambda: None)
            delay = min(delay * 2, INIT_RETRY_MAX)

    @staticmethod
    def _failed(f: Failure) -> None:
        if f.check(LeadershipError):
            log.info(
                "acl: leadership lost before ACLs were initialized: {error}",
                error=f.getErrorMessage(),
            )
        elif not f.check(CancelledError):
            log.failure("acl: failed to initialize ACLs", failure=f)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        task, self._task = self._task, None
        if task is None:
            return succeed(None)
        if not task.called:
            task.cancel()
        return task.addBoth(lambda _: None)


class ACLServer(MultiService):
    """ACLs on one server (see the module docstring)."""

    def __init__(
        self,
        catalog: ICatalogServer,
        primary_datacenter: str,
        *,
        enabled: bool,
        default_policy: str = "allow",
        initial_management: str = "",
        data_dir: str = "",
        leader_routines: bool = True,
        replication_token: str = "",
        replication_interval: float = REPLICATION_INTERVAL,
        down_policy: str = "extend-cache",
        token_ttl: float = 30.0,
        policy_ttl: float = 30.0,
        key_list_policy: bool = False,
        reap_interval: float = REAP_INTERVAL,
    ) -> None:
        super().__init__()
        self.setName("acl")
        self.catalog = catalog
        self.primary_datacenter = primary_datacenter or catalog.datacenter
        self.enabled = enabled
        self.initial_management = initial_management
        self.replication_token = replication_token
        self.replication_interval = replication_interval
        self.reap_interval = reap_interval
        model.install(catalog.fsm)
        self.resolver = LocalResolver(
            catalog.fsm.state,
            catalog.datacenter,
            default_policy,
            enabled=enabled,
            key_list_policy=key_list_policy,
        )
        #: what the RPC handlers authorize with: in a secondary, the replicated copy, then the
        #: primary (cached for ``token_ttl``, ``down_policy`` when it cannot be reached)
        self.guard_resolver: LocalResolver | RemoteResolver = self.resolver
        forwarder = catalog.endpoints.forwarder
        if catalog.datacenter != self.primary_datacenter and forwarder is not None:
            primary, fwd = self.primary_datacenter, forwarder

            def remote(method: str, args: dict[str, Any]) -> Deferred[Any]:
                return fwd.forward_dc(primary, method, dict(args, Datacenter=primary))

            self.guard_resolver = RemoteResolver(
                self.resolver, remote, down_policy, token_ttl, policy_ttl
            )
        self.endpoints = ACLEndpoints(
            catalog.endpoints,
            self.resolver,
            self.primary_datacenter,
            data_dir,
            log=lambda line: log.info("acl: {line}", line=line),
        )
        self.endpoints.status = initial_status(self.primary_datacenter)
        catalog.handlers.update(self.endpoints.handlers())
        set_resolver: Callable[[Any], None] | None = getattr(
            catalog.endpoints, "set_acl_resolver", None
        )
        if set_resolver is not None:
            set_resolver(self.resolver)
        self.leader: LeaderServices | None = None
        if enabled and leader_routines:
            self.leader = LeaderServices(catalog.consensus, self.build_routines, name="acl-leader")
            self.leader.setServiceParent(self)

    @property
    def is_primary(self) -> bool:
        return self.catalog.datacenter == self.primary_datacenter

    def register_into(self, registry: Any) -> None:
        self.endpoints.register_into(registry)

    def guard(self, registry: Any | None) -> None:
        """Serve every handler with its ACL check and filter (``wanfedtx.acl.enforce``): the
        catalog's in-process table (the HTTP API's) and, if given, the :8300 table, including
        handlers registered later."""
        clock = self.catalog.endpoints.clock
        resolver = self.guard_resolver
        guarded = GuardedHandlers(self.catalog.handlers, resolver, clock)
        setattr(self.catalog, "handlers", guarded)  # noqa: B010 - the table is replaced whole
        if registry is None:
            return

        def wrap(name: str, endpoint: Any) -> Any:
            if name.startswith("ACL."):
                return endpoint
            return enforce.guard(name, endpoint, resolver=resolver, clock=clock)

        registry.set_wrapper(wrap)

    def set_replication_token(self, token: str) -> None:
        """``acl.tokens.replication`` replaced at run time: the running replicator uses it from
        its next round, later leadership terms from their start."""
        self.replication_token = token
        if self.leader is None:
            return
        for routine in self.leader.routines:
            if isinstance(routine, ACLReplicator):
                routine.set_token(token)

    def build_routines(self) -> list[Service]:
        reaper = TokenReaper(self.catalog.endpoints, self.is_primary, self.reap_interval)
        if not self.is_primary:
            return [
                ACLReplicator(
                    self.catalog.endpoints,
                    self.primary_datacenter,
                    self.replication_token,
                    self.endpoints.status,
                    self.replication_interval,
                ),
                reaper,
            ]
        return [InitializeACLs(self.catalog.endpoints, self.initial_management), reaper]
