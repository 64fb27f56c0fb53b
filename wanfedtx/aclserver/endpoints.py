# -*- test-case-name: tests.unit.acl.test_acl_endpoints -*-
"""The ``ACL.*`` RPC endpoints: bootstrap, policies and tokens, over the catalog's endpoints.

Writes go to the primary datacenter's leader (``_forward`` with ``Datacenter`` = the primary;
local tokens stay where they are created) and are validated before raft with Consul's messages.
Reads are served from the local store. Every handler but ``BootstrapTokens`` resolves the
request's ``Token`` (``""`` = anonymous) and needs ``acl:read`` / ``acl:write``; a token reads
itself through ``TokenRead`` with ``TokenIDType = "secret"``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred

from wanfedtx.acl.authorizer import Authorizer
from wanfedtx.acl.model import (
    ANONYMOUS_ACCESSOR,
    BOOTSTRAP_DESCRIPTION,
    GLOBAL_MANAGEMENT_ID,
    HIDDEN,
    RESERVED_PREFIX,
    ACLError,
    ACLNotFoundError,
    PermissionDeniedError,
    is_uuid,
    make_token,
    new_uuid,
    policy_hash,
    validate_policy,
)
from wanfedtx.acl.resolver import LocalResolver
from wanfedtx.catalog.endpoints import Endpoints, as_handler
from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.config.durations import format_duration, parse_duration
from wanfedtx.fsm.commands import MessageType
from wanfedtx.state import StateStore

Args = dict[str, Any]
DISABLED = "ACL support disabled"
MIN_EXPIRATION, MAX_EXPIRATION = 60.0, 24 * 3600.0  # ACLTokenMin/MaxExpirationTTL
RESET_FILE = "acl-bootstrap-reset"

#: token fields of Consul's API this server does not implement: refused, never ignored
UNSUPPORTED_TOKEN_FIELDS = (
    ("Roles", "ACL roles"),
    ("ServiceIdentities", "Service identities"),
    ("NodeIdentities", "Node identities"),
    ("AuthMethod", "Auth methods"),
)


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class ACLEndpoints:
    """The ``ACL`` RPC service of one server."""

    def __init__(
        self,
        endpoints: Endpoints,
        resolver: LocalResolver,
        primary_datacenter: str,
        data_dir: str = "",
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.resolver = resolver
        self.primary_datacenter = primary_datacenter or endpoints.datacenter
        self.data_dir = data_dir
        self.log = log or (lambda line: None)
        #: ``/v1/acl/replication``: kept up to date by the replicator in secondaries
        self.status: dict[str, Any] = {}

    @property
    def state(self) -> StateStore:
        return self.endpoints.state

    @property
    def is_primary(self) -> bool:
        return self.endpoints.datacenter == self.primary_datacenter

    def now(self) -> float:
        return float(self.endpoints.clock.seconds())

    def handlers(self) -> dict[str, Callable[[Args], Deferred[Any]]]:
        table = {
            "ACL.BootstrapTokens": self.bootstrap,
            "ACL.PolicySet": self.policy_set,
            "ACL.PolicyRead": self.policy_read,
            "ACL.PolicyList": self.policy_list,
            "ACL.PolicyDelete": self.policy_delete,
            "ACL.TokenSet": self.token_set,
            "ACL.TokenRead": self.token_read,
            "ACL.TokenList": self.token_list,
            "ACL.TokenDelete": self.token_delete,
            "ACL.ReplicationStatus": self.replication_status,
            "ACL.PolicyBatchRead": self.policy_batch_read,
            "ACL.TokenBatchRead": self.token_batch_read,
            "ACL.PolicyResolve": self.policy_resolve,
        }

        def checked(fn: Callable[[Args], Any]) -> Callable[[Args], Deferred[Any]]:
            def call(args: Args) -> Any:
                if not isinstance(args, dict):
                    raise BadRequestError("request must be an object")
                if not self.resolver.enabled:
                    raise ACLError(DISABLED)
                return fn(args)

            return as_handler(call)

        return {name: checked(fn) for name, fn in table.items()}

    def register_into(self, registry: Any) -> None:
        for name, handler in self.handlers().items():
            registry.register(name, handler)

    # -- helpers -------------------------------------------------------------------------------

    def authorize(self, args: Args) -> Authorizer:
        token = args.get("Token") or ""
        if not isinstance(token, str):
            raise ACLNotFoundError()
        return self.resolver.authorizer(token, self.now())

    async def _primary(self, method: str, args: Args) -> tuple[bool, Any]:
        return await self.endpoints._forward(
            method, dict(args, Datacenter=self.primary_datacenter), write=True
        )

    def _known_datacenters(self) -> list[str]:
        """Datacenters a policy may name: ours, the primary and those the WAN pool knows."""
        known = [self.endpoints.datacenter, self.primary_datacenter]
        listing = getattr(self.endpoints.forwarder, "datacenters", None)
        if listing is not None:
            known += list(listing())
        return known

    def _link_names(self, token: Args) -> Args:
        out = dict(token)
        links = []
        for link in token.get("Policies") or []:
            _, p = self.state.acl_policy_get(None, str(link.get("ID")))
            if p is not None:
                links.append({"ID": p["ID"], "Name": p["Name"]})
        out["Policies"] = links
        return out

    def _meta(self, index: int) -> Args:
        return self.endpoints._meta(index)

    # -- bootstrap -----------------------------------------------------------------------------

    async def bootstrap(self, args: Args) -> Args:
        if not self.is_primary:
            raise ACLError(DISABLED)
        forwarded, reply = await self._primary("ACL.BootstrapTokens", args)
        if forwarded:
            return dict(reply)
        done = self.state.acl_bootstrap_index()
        reset = False
        if done:
            reset = self._reset_file(done)
            if not reset:
                raise PermissionDeniedError(
                    f"ACL bootstrap no longer allowed (reset index: {done})"
                )
        token = make_token(
            new_uuid(),
            new_uuid(),
            BOOTSTRAP_DESCRIPTION,
            [GLOBAL_MANAGEMENT_ID],
            rfc3339(self.now()),
        )
        await self.endpoints._apply(MessageType.ACL_BOOTSTRAP, {"Token": token, "Reset": reset})
        self.log("ACL bootstrap completed")
        _, row = self.state.acl_token_get(None, token["AccessorID"])
        return self._link_names(row or token)

    def _reset_file(self, done: int) -> bool:
        if not self.data_dir:
            return False
        path = os.path.join(self.data_dir, RESET_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(64).strip()
        except OSError:
            return False
        try:
            os.remove(path)
        except OSError:
            pass
        if text != str(done):
            raise PermissionDeniedError(
                f"Invalid bootstrap reset index (specified {text}, reset index: {done})"
            )
        return True

    # -- policies ------------------------------------------------------------------------------

    async def policy_set(self, args: Args) -> Args:
        forwarded, reply = await self._primary("ACL.PolicySet", args)
        if forwarded:
            return dict(reply)
        if not self.authorize(args).acl_write():
            raise PermissionDeniedError()
        body = args.get("Policy")
        row = validate_policy(body, self._known_datacenters())
        policy_id = (body or {}).get("ID") or ""
        _, same_name = self.state.acl_policy_get_by_name(None, row["Name"])
        if policy_id:
            if not is_uuid(policy_id):
                raise ACLError("Policy ID invalid UUID")
            _, existing = self.state.acl_policy_get(None, policy_id)
            if existing is None:
                raise ACLError(f"cannot find policy {policy_id}")
            if same_name is not None and same_name["ID"] != policy_id:
                raise ACLError(f'Invalid Policy: A policy with name "{row["Name"]}" already exists')
            if policy_id == GLOBAL_MANAGEMENT_ID:
                if row["Rules"] != existing["Rules"]:
                    raise ACLError(
                        "Changing the Rules for the builtin global-management policy is not "
                        "permitted"
                    )
                if row["Datacenters"]:
                    raise ACLError(
                        "Changing the Datacenters of the builtin global-management policy is not "
                        "permitted"
                    )
        else:
            if same_name is not None:
                raise ACLError(f'Invalid Policy: A Policy with Name "{row["Name"]}" already exists')
            policy_id = new_uuid()
        row["ID"] = policy_id
        row["Hash"] = policy_hash(row)
        await self.endpoints._apply(MessageType.ACL_POLICY_SET, {"Policies": [row]})
        _, stored = self.state.acl_policy_get(None, policy_id)
        return dict(stored or row)

    async def policy_read(self, args: Args) -> Args:
        if not self.authorize(args).acl_read():
            raise PermissionDeniedError()
        policy_id, name = args.get("PolicyID") or "", args.get("PolicyName") or ""
        if name:
            index, row = self.state.acl_policy_get_by_name(None, str(name))
        else:
            index, row = self.state.acl_policy_get(None, str(policy_id))
        return {"Policy": row, **self._meta(index)}

    async def policy_list(self, args: Args) -> Args:
        if not self.authorize(args).acl_read():
            raise PermissionDeniedError()
        index, rows = self.state.acl_policy_list(None)
        stubs = [
            {
                k: r.get(k)
                for k in (
                    "ID",
                    "Name",
                    "Description",
                    "Datacenters",
                    "Hash",
                    "CreateIndex",
                    "ModifyIndex",
                )
            }
            for r in rows
        ]
        return {"Policies": stubs, **self._meta(index)}

    async def policy_delete(self, args: Args) -> Args:
        forwarded, reply = await self._primary("ACL.PolicyDelete", args)
        if forwarded:
            return dict(reply)
        if not self.authorize(args).acl_write():
            raise PermissionDeniedError()
        policy_id = str(args.get("PolicyID") or "")
        if policy_id == GLOBAL_MANAGEMENT_ID:
            raise ACLError("Delete operation not permitted on the builtin global-management policy")
        _, row = self.state.acl_policy_get(None, policy_id)
        if row is not None:
            await self.endpoints._apply(MessageType.ACL_POLICY_DELETE, {"PolicyIDs": [policy_id]})
        return {"Name": row["Name"] if row else ""}

    # -- tokens --------------------------------------------------------------------------------

    def _policy_links(self, links: Any) -> list[str]:
        if links is None:
            return []
        if not isinstance(links, list):
            raise ACLError("Request decode failed: Policies must be a list")
        ids: list[str] = []
        for link in links:
            if not isinstance(link, dict):
                raise ACLError("Request decode failed: a policy link must be an object")
            pid, name = link.get("ID") or "", link.get("Name") or ""
            if pid:
                _, p = self.state.acl_policy_get(None, str(pid))
                if p is None:
                    raise ACLError(f"No such ACL policy with ID {pid!r}")
            else:
                _, p = self.state.acl_policy_get_by_name(None, str(name))
                if p is None:
                    raise ACLError(f'No such ACL policy with name "{name}"')
            if p["ID"] not in ids:
                ids.append(p["ID"])
        return ids

    async def token_set(self, args: Args) -> Args:
        body = args.get("ACLToken")
        if not isinstance(body, dict):
            raise ACLError("Request decode failed: the token must be a JSON object")
        local = bool(body.get("Local"))
        if not local:
            forwarded, reply = await self._primary("ACL.TokenSet", args)
            if forwarded:
                return dict(reply)
        elif not self.is_primary:
            raise ACLError("Local tokens are disabled")
        else:
            forwarded, reply = await self.endpoints._forward("ACL.TokenSet", args, write=True)
            if forwarded:
                return dict(reply)
        if not self.authorize(args).acl_write():
            raise PermissionDeniedError()
        return await self._token_write(args, body, local)

    async def _token_write(self, args: Args, body: Args, local: bool) -> Args:
        create = bool(args.get("Create", True))
        accessor = body.get("AccessorID") or ""
        secret = body.get("SecretID") or ""
        description = body.get("Description") or ""
        if not isinstance(description, str):
            raise ACLError("Request decode failed: Description must be a string")
        if body.get("Rules"):
            raise ACLError("Rules cannot be specified for this token")
        if body.get("Type"):
            raise ACLError("Type cannot be specified for this token")
        for field, what in UNSUPPORTED_TOKEN_FIELDS:
            if body.get(field):
                raise ACLError(f"{what} are not supported: link policies instead")
        expiration = self._expiration(body) if create else None
        policy_ids = self._policy_links(body.get("Policies"))
        created = rfc3339(self.now())
        if create:
            for field, value in (("AccessorID", accessor), ("SecretID", secret)):
                if not value:
                    continue
                if not is_uuid(value):
                    raise ACLError(f"Invalid Token: {field} is not a valid UUID")
                if str(value).startswith(RESERVED_PREFIX):
                    raise ACLError(
                        'Invalid Token: UUIDs with the prefix "00000000-0000-0000-0000-0000000000"'
                        " are reserved"
                    )
            if accessor and self.state.acl_token_get(None, accessor)[1] is not None:
                raise ACLError("Invalid Token: AccessorID is already in use")
            if secret and self.state.acl_token_get_by_secret(None, secret)[1] is not None:
                raise ACLError("Invalid Token: SecretID is already in use")
            accessor, secret = accessor or new_uuid(), secret or new_uuid()
        else:
            if not is_uuid(accessor):
                raise ACLError("Invalid Token: AccessorID is not a valid UUID")
            _, existing = self.state.acl_token_get(None, accessor)
            if existing is None:
                raise ACLError(f'Cannot find token "{accessor}"')
            if secret and secret != existing["SecretID"]:
                raise ACLError("Changing a tokens SecretID is not permitted")
            if local != bool(existing.get("Local")):
                raise ACLError(f"cannot toggle local mode of {accessor}")
            secret, created = existing["SecretID"], str(existing.get("CreateTime") or created)
            expiration = existing.get("ExpirationTime") or None
            wanted = body.get("ExpirationTime")
            if body.get("ExpirationTTL") or (wanted and wanted != expiration):
                raise ACLError(f"Cannot change expiration time of {accessor}")
        token = make_token(accessor, secret, description, policy_ids, created, local, expiration)
        await self.endpoints._apply(MessageType.ACL_TOKEN_SET, {"Tokens": [token]})
        _, row = self.state.acl_token_get(None, accessor)
        return self._link_names(row or token)

    def _expiration(self, body: Args) -> str | None:
        """``ExpirationTTL`` or ``ExpirationTime`` -> the RFC3339 expiration, Consul's checks."""
        ttl, when = body.get("ExpirationTTL"), body.get("ExpirationTime")
        if ttl and when:
            raise ACLError("Token Expiration TTL and Expiration Time cannot both be set")
        now = self.now()
        if ttl:
            try:
                seconds = parse_duration(str(ttl))
            except ValueError:
                raise ACLError(f"Request decode failed: invalid duration {ttl!r}") from None
            if seconds <= 0:
                raise ACLError(f"Token Expiration TTL '{ttl}' should be > 0")
            at = now + seconds
        elif when:
            try:
                at = datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise ACLError(f"Request decode failed: invalid ExpirationTime {when!r}") from None
            if at < now:
                raise ACLError("ExpirationTime cannot be before CreateTime")
        else:
            return None
        if at - now > MAX_EXPIRATION:
            raise ACLError(
                "ExpirationTime cannot be more than 24h0m0s in the future "
                f"(was {format_duration(at - now)})"
            )
        if at - now < MIN_EXPIRATION:
            raise ACLError(
                "ExpirationTime cannot be less than 1m0s in the future "
                f"(was {format_duration(at - now)})"
            )
        return rfc3339(at)

    async def token_read(self, args: Args) -> Args:
        kind = args.get("TokenIDType") or "accessor"
        token_id = args.get("TokenID") or ""
        if not isinstance(token_id, str):
            raise ACLNotFoundError()
        if kind == "secret":
            # the token itself: no permission needed beyond being a valid token
            row = self.resolver.token(token_id, self.now())
            return {
                "Token": self._link_names(row),
                **self._meta(self.state.max_index("acl-tokens")),
            }
        authz = self.authorize(args)
        if not authz.acl_read():
            raise PermissionDeniedError()
        index, found = self.state.acl_token_get(None, token_id)
        if found is None:
            return {"Token": None, **self._meta(index)}
        out = self._link_names(found)
        if not authz.acl_write():
            out["SecretID"] = HIDDEN
        return {"Token": out, **self._meta(index)}

    async def token_list(self, args: Args) -> Args:
        if not self.authorize(args).acl_read():
            raise PermissionDeniedError()
        index, rows = self.state.acl_token_list(None, local=not args.get("GlobalOnly"))
        policy = args.get("Policy") or ""
        out = []
        for r in rows:
            if r.get("ExpirationTime") and str(r["ExpirationTime"]) <= rfc3339(self.now()):
                continue  # expired tokens count as not found
            if policy and not any(link.get("ID") == policy for link in r.get("Policies") or []):
                continue
            stub = self._link_names(r)
            stub.pop("SecretID", None)
            stub["Legacy"] = False
            out.append(stub)
        return {"Tokens": out, **self._meta(index)}

    async def token_delete(self, args: Args) -> Args:
        accessor = args.get("TokenID") or ""
        if not is_uuid(accessor):
            raise ACLError("Accessor ID is missing or an invalid UUID")
        _, row = self.state.acl_token_get(None, accessor)
        local = bool(row.get("Local")) if row is not None else False
        if local:
            forwarded, reply = await self.endpoints._forward("ACL.TokenDelete", args, write=True)
        else:
            forwarded, reply = await self._primary("ACL.TokenDelete", args)
        if forwarded:
            return dict(reply)
        if not self.authorize(args).acl_write():
            raise PermissionDeniedError()
        if accessor == ANONYMOUS_ACCESSOR:
            raise ACLError("Delete operation not permitted on the anonymous token")
        if row is not None and row["SecretID"] == (args.get("Token") or ""):
            raise ACLError("Deletion of the request's authorization token is not permitted")
        if row is not None:
            await self.endpoints._apply(MessageType.ACL_TOKEN_DELETE, {"TokenIDs": [accessor]})
        return {"Accessor": accessor}

    # -- replication status ------------------------------------------------------------------

    async def replication_status(self, args: Args) -> Args:
        """Consul's ``/v1/acl/replication`` shape (the primary reports ``Enabled: false``)."""
        forwarded, reply = await self.endpoints._forward("ACL.ReplicationStatus", args, write=False)
        if forwarded:
            return dict(reply)
        unset = "0001-01-01T00:00:00Z"
        out: Args = {
            "Enabled": False,
            "Running": False,
            "SourceDatacenter": self.primary_datacenter,
            "ReplicationType": "",
            "ReplicatedIndex": 0,
            "ReplicatedRoleIndex": 0,
            "ReplicatedTokenIndex": 0,
            "LastSuccess": unset,
            "LastError": unset,
        }
        out.update(self.status)
        return out

    async def policy_batch_read(self, args: Args) -> Args:
        if not self.authorize(args).acl_read():
            raise PermissionDeniedError()
        ids = args.get("PolicyIDs") or []
        rows = [self.state.acl_policy_get(None, str(i))[1] for i in ids if isinstance(i, str)]
        return {"Policies": [r for r in rows if r is not None], **self._meta(0)}

    async def token_batch_read(self, args: Args) -> Args:
        authz = self.authorize(args)
        if not authz.acl_read():
            raise PermissionDeniedError()
        ids = args.get("AccessorIDs") or []
        rows = [self.state.acl_token_get(None, str(i))[1] for i in ids if isinstance(i, str)]
        tokens = []
        for r in rows:
            if r is None:
                continue
            t = self._link_names(r)
            if not authz.acl_write():
                t["SecretID"] = HIDDEN
            tokens.append(t)
        return {"Tokens": tokens, **self._meta(0)}

    async def policy_resolve(self, args: Args) -> Args:
        """The policies of the calling token, by ID (a secondary resolving a token it has not
        replicated yet); asking for any other policy is ``Permission denied``."""
        token = self.resolver.token(str(args.get("Token") or ""), self.now())
        own = {str(link.get("ID")) for link in token.get("Policies") or []}
        ids = args.get("PolicyIDs") or []
        if not isinstance(ids, list) or any(str(i) not in own for i in ids):
            raise PermissionDeniedError()
        rows = [self.state.acl_policy_get(None, str(i))[1] for i in ids]
        return {"Policies": [r for r in rows if r is not None], **self._meta(0)}
