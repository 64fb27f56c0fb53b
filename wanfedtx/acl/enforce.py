# -*- test-case-name: tests.unit.acl.test_acl_enforce -*-
"""Enforcement: every RPC handler wrapped with the check (and the filter) Consul makes.

:class:`GuardedHandlers` (a ``name -> handler`` table) and the :8300 table's wrapper serve
every handler, registered before or after, through :func:`guard`. A
guarded handler resolves the request's ``Token`` (``""`` = anonymous) into an ``Authorizer``
when the request is served in this datacenter (a request for another datacenter is authorized
there, with the same token, which travels in the forwarded request), runs the method's
pre-check (``Permission denied`` before anything is written) and filters the reply of list
reads, marking it ``ResultsFilteredByACLs`` when something was dropped (the HTTP layer turns
that into ``X-Consul-Results-Filtered-By-ACLs: true``). ``ACL.*`` handlers check for
themselves; a method this table does not know needs ``acl:write`` (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail

from wanfedtx.acl.authorizer import Authorizer
from wanfedtx.acl.model import PermissionDeniedError
from wanfedtx.acl.remote import authorize

Args = dict[str, Any]
Handler = Callable[[Args], Deferred[Any]]
FILTERED = "ResultsFilteredByACLs"

KV_WRITE_PREFIX_OPS = ("delete-tree",)


class IResolver(Protocol):
    @property
    def enabled(self) -> bool: ...

    @property
    def datacenter(self) -> str: ...

    @property
    def state(self) -> Any: ...

    def authorizer(self, secret: str, now: float) -> Authorizer: ...


def _deny(ok: bool) -> None:
    if not ok:
        raise PermissionDeniedError()


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _get(d: Any, key: str) -> Any:
    """A request field, matched case-insensitively as the request decoders do."""
    if not isinstance(d, dict):
        return None
    if key in d:
        return d[key]
    lower = key.lower()
    return next((v for k, v in d.items() if isinstance(k, str) and k.lower() == lower), None)


# -- pre-checks ------------------------------------------------------------------------------


def _service_name(state: Any, node: str, service_id: str) -> str:
    try:
        _, found = state.node_services(None, node)
    except Exception:
        return ""
    if not found:
        return ""
    _, services = found
    for s in services:
        if s.get("ID") == service_id:
            return str(s.get("Service") or "")
    return ""


def check_register(authz: Authorizer, args: Args, state: Any) -> None:
    node = _s(_get(args, "Node"))
    existing = None
    try:
        _, existing = state.get_node(None, node)
    except Exception:
        existing = None
    if existing is None or existing.get("Address") != _get(args, "Address"):
        _deny(authz.node_write(node))
    svc = _get(args, "Service")
    if isinstance(svc, dict):
        name = _s(_get(svc, "Service"))
        if name != "consul":
            _deny(authz.service_write(name))
            old = _service_name(state, node, _s(_get(svc, "ID")) or name)
            if old and old != name:
                _deny(authz.service_write(old))
    checks = list(_get(args, "Checks") or [])
    if isinstance(_get(args, "Check"), dict):
        checks.append(_get(args, "Check"))
    for check in checks:
        if not isinstance(check, dict):
            continue
        sid = _s(_get(check, "ServiceID"))
        if not sid:
            _deny(authz.node_write(node))
            continue
        if isinstance(svc, dict) and (_s(_get(svc, "ID")) or _s(_get(svc, "Service"))) == sid:
            continue
        name = _service_name(state, node, sid)
        if name != "consul":
            _deny(authz.service_write(name))


def check_deregister(authz: Authorizer, args: Args, state: Any) -> None:
    node = _s(_get(args, "Node"))
    if authz.node_write(node):
        return
    sid, cid = _s(_get(args, "ServiceID")), _s(_get(args, "CheckID"))
    if sid:
        _deny(authz.service_write(_service_name(state, node, sid)))
    elif cid:
        owner = ""
        try:
            _, checks = state.node_checks(None, node)
            owner = next(
                (c.get("ServiceName") or "" for c in checks if c.get("CheckID") == cid), ""
            )
        except Exception:
            owner = ""
        _deny(bool(owner) and authz.service_write(owner))
    else:
        _deny(False)


def check_kvs_apply(authz: Authorizer, args: Args, state: Any) -> None:
    entry = _get(args, "DirEnt") or {}
    key = _s(_get(entry, "Key")) if isinstance(entry, dict) else ""
    if _get(args, "Op") in KV_WRITE_PREFIX_OPS:
        _deny(authz.key_write_prefix(key))
    else:
        _deny(authz.key_write(key))


def check_connect_sign(authz: Authorizer, args: Args, state: Any) -> None:
    """``ConnectCA.Sign``: service:write on the CSR's SPIFFE service (node:write for an agent
    ID). A CSR that names neither is refused by the endpoint itself, before anything is
    written, with the reference's message."""
    from urllib.parse import unquote, urlsplit

    from cryptography import x509

    csr_text = _get(args, "CSR")
    if not isinstance(csr_text, str):
        return
    try:
        csr = x509.load_pem_x509_csr(csr_text.encode())
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        path = urlsplit(uris[0]).path if len(uris) == 1 else ""
    except Exception:  # the endpoint refuses, with its message, what does not parse here
        return
    parts = path.split("/")
    if len(parts) == 7 and parts[1] == "ns" and parts[3] == "dc" and parts[5] == "svc":
        _deny(authz.service_write(unquote(parts[6])))
    elif len(parts) == 6 and parts[1:3] == ["agent", "client"] and parts[3] == "dc":
        _deny(authz.node_write(unquote(parts[5])))


PRE: dict[str, Callable[[Authorizer, Args, Any], None]] = {
    "Catalog.Register": check_register,
    "Catalog.Deregister": check_deregister,
    "KVS.Apply": check_kvs_apply,
    "KVS.Get": lambda a, args, s: _deny(a.key_read(_s(_get(args, "Key")))),
    "FederationState.Apply": lambda a, args, s: _deny(a.operator_write()),
    "FederationState.Get": lambda a, args, s: _deny(a.operator_read()),
    "FederationState.List": lambda a, args, s: _deny(a.operator_read()),
    "Operator.RaftGetConfiguration": lambda a, args, s: _deny(a.operator_read()),
    "Operator.RaftRemovePeerByAddress": lambda a, args, s: _deny(a.operator_write()),
    "Operator.RaftRemovePeerByID": lambda a, args, s: _deny(a.operator_write()),
    "ConnectCA.ConfigurationGet": lambda a, args, s: _deny(a.operator_read()),
    "ConnectCA.SignIntermediate": lambda a, args, s: _deny(a.operator_write()),
    "ConnectCA.ConfigurationSet": lambda a, args, s: _deny(a.operator_write()),
    "ConnectCA.Sign": check_connect_sign,
}
OPEN = frozenset(
    {
        "Catalog.ListDatacenters",
        "Status.Leader",
        "Status.Peers",
        "Status.Ping",
        "ConnectCA.Roots",
        "Catalog.ListNodes",
        "Catalog.ListServices",
        "Catalog.ServiceNodes",
        "Catalog.NodeServices",
        "Health.ServiceNodes",
        "Health.ChecksInState",
        "Health.NodeChecks",
        "Health.ServiceChecks",
        "KVS.List",
        "KVS.ListKeys",
        "Internal.ServiceDump",
        "FederationState.ListMeshGateways",
    }
)


# -- filters ---------------------------------------------------------------------------------


def _node_name(n: Any) -> str:
    return _s(n.get("Node")) if isinstance(n, dict) else ""


def _csn_ok(a: Authorizer, csn: Any) -> bool:
    if not isinstance(csn, dict):
        return False
    svc = csn.get("Service") or {}
    return a.node_read(_node_name(csn.get("Node"))) and a.service_read(_s(svc.get("Service")))


def _check_ok(a: Authorizer, c: Any) -> bool:
    if not isinstance(c, dict) or not a.node_read(_s(c.get("Node"))):
        return False
    service = _s(c.get("ServiceName"))
    return not service or a.service_read(service)


def _filter_list(reply: Args, key: str, keep: Callable[[Any], bool]) -> bool:
    items = reply.get(key)
    if not isinstance(items, list):
        return False
    kept = [i for i in items if keep(i)]
    if len(kept) == len(items):
        return False
    reply[key] = kept if kept or key != "Entries" else None
    return True


def _filter_node_services(a: Authorizer, reply: Args) -> bool:
    ns = reply.get("NodeServices")
    if not isinstance(ns, dict):
        return False
    if not a.node_read(_node_name(ns.get("Node"))):
        reply["NodeServices"] = None
        return True
    services = ns.get("Services") or {}
    kept = {k: v for k, v in services.items() if a.service_read(_s(v.get("Service")))}
    if len(kept) == len(services):
        return False
    reply["NodeServices"] = dict(ns, Services=kept)
    return True


def _filter_services(a: Authorizer, reply: Args) -> bool:
    services = reply.get("Services")
    if not isinstance(services, dict):
        return False
    kept = {k: v for k, v in services.items() if a.service_read(k)}
    if len(kept) == len(services):
        return False
    reply["Services"] = kept
    return True


def _filter_gateways(a: Authorizer, reply: Args) -> bool:
    dcs = reply.get("DatacenterNodes")
    if not isinstance(dcs, dict):
        return False
    out: dict[str, Any] = {}
    dropped = False
    for dc, nodes in dcs.items():
        kept = [n for n in nodes or [] if _csn_ok(a, n)]
        dropped = dropped or len(kept) != len(nodes or [])
        if kept:
            out[dc] = kept
    reply["DatacenterNodes"] = out
    return dropped


POST: dict[str, Callable[[Authorizer, Args], bool]] = {
    "Catalog.ListNodes": lambda a, r: _filter_list(
        r, "Nodes", lambda n: a.node_read(_node_name(n))
    ),
    "Catalog.ListServices": _filter_services,
    "Catalog.ServiceNodes": lambda a, r: _filter_list(
        r,
        "ServiceNodes",
        lambda n: a.node_read(_s(n.get("Node"))) and a.service_read(_s(n.get("ServiceName"))),
    ),
    "Catalog.NodeServices": _filter_node_services,
    "Health.ServiceNodes": lambda a, r: _filter_list(r, "Nodes", lambda n: _csn_ok(a, n)),
    "Health.ChecksInState": lambda a, r: _filter_list(r, "HealthChecks", lambda c: _check_ok(a, c)),
    "Health.NodeChecks": lambda a, r: _filter_list(r, "HealthChecks", lambda c: _check_ok(a, c)),
    "Health.ServiceChecks": lambda a, r: _filter_list(r, "HealthChecks", lambda c: _check_ok(a, c)),
    "KVS.List": lambda a, r: _filter_list(r, "Entries", lambda e: a.key_read(_s(e.get("Key")))),
    "KVS.ListKeys": lambda a, r: _filter_list(r, "Keys", lambda k: a.key_read(_s(k))),
    "Internal.ServiceDump": lambda a, r: _filter_list(r, "Nodes", lambda n: _csn_ok(a, n)),
    "FederationState.ListMeshGateways": _filter_gateways,
}


def guard(name: str, handler: Handler, *, resolver: IResolver, clock: Any) -> Handler:
    """``handler`` with the check and filter of ``name`` (see module)."""
    pre = PRE.get(name)
    post = POST.get(name)
    known = pre is not None or name in OPEN
    route = "TargetDatacenter" if name == "FederationState.Get" else "Datacenter"
    list_field = {"KVS.List": "Key", "KVS.ListKeys": "Prefix"}.get(name)

    def guarded(args: Args) -> Deferred[Any]:
        if not resolver.enabled or not isinstance(args, dict):
            return handler(args)
        dc = args.get(route) or resolver.datacenter
        if dc != resolver.datacenter:
            return handler(args)  # authorized in the target datacenter
        token = args.get("Token") or ""
        secret = token if isinstance(token, str) else "\x00"
        try:
            resolved = authorize(resolver, secret, clock.seconds())
        except Exception as exc:
            return fail(exc)
        if isinstance(resolved, Deferred):
            return resolved.addCallback(run, args)
        return run(resolved, args)

    def run(authz: Authorizer, args: Args) -> Deferred[Any]:
        try:
            if list_field is not None and getattr(resolver, "key_list_policy", False):
                _deny(authz.key_list(_s(_get(args, list_field))))
            if pre is not None:
                pre(authz, args, resolver.state)
            elif not known:
                _deny(authz.acl_write())
        except Exception as exc:
            return fail(exc)
        d = handler(args)
        if post is None:
            return d

        def filtered(reply: Any) -> Any:
            if isinstance(reply, dict):
                reply = dict(reply)
                if post(authz, reply):
                    reply[FILTERED] = True
            return reply

        return d.addCallback(filtered)

    return guarded


class GuardedHandlers(dict[str, Handler]):
    """A ``name -> handler`` table whose lookups return guarded handlers, so handlers added
    after the ACL layer was installed are checked too (``ACL.*`` are served as they are)."""

    def __init__(self, table: MutableMapping[str, Handler], resolver: IResolver, clock: Any):
        super().__init__(table)
        self._resolver = resolver
        self._clock = clock
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def _guarded(self, name: str, handler: Handler) -> Handler:
        if name.startswith("ACL."):
            return handler
        cached = self._wrapped.get(name)
        if cached is None or cached[0] is not handler:
            cached = (handler, guard(name, handler, resolver=self._resolver, clock=self._clock))
            self._wrapped[name] = cached
        return cached[1]

    def __getitem__(self, name: str) -> Handler:
        return self._guarded(name, super().__getitem__(name))

    def get(self, name: str, default: Any = None) -> Any:
        handler = super().get(name)
        return default if handler is None else self._guarded(name, handler)
