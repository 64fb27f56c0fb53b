# -*- test-case-name: tests.unit.acl.test_acl_http -*-
"""``/v1/acl/*``: bootstrap, tokens, policies and replication status over the ``ACL.*`` RPCs.

As the reference: every route answers ``401 ACL support disabled`` when ACLs are off;
``Permission denied`` and ``ACL not found`` are 403 with the error text; a refused body is a
400 with Consul's message. A policy or token that does not exist is ``403 ACL not found``.
Token list entries carry no SecretID; a token read without ``acl:write`` shows it as
``<hidden>``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
from klein import Klein

from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    endpoint,
    json_body,
    json_reply,
    query_args,
    set_meta,
    write_args,
)
from wanfedtx.http.family import family_app

NOT_FOUND = "ACL not found"


POLICY_FIELDS = ("ID", "Name", "Description", "Rules", "Datacenters")
TOKEN_FIELDS = (
    "AccessorID",
    "SecretID",
    "Description",
    "Policies",
    "Local",
    "ExpirationTime",
    "ExpirationTTL",
    "Rules",
    "Type",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
    "AuthMethod",
)
#: Consul's ACL API families this server does not implement: a one-line 404 naming them
UNSUPPORTED = {
    "role": "ACL roles",
    "roles": "ACL roles",
    "auth-method": "ACL auth methods",
    "auth-methods": "ACL auth methods",
    "binding-rule": "ACL binding rules",
    "binding-rules": "ACL binding rules",
    "login": "ACL auth methods",
    "logout": "ACL auth methods",
    "rules": "Legacy ACL rule translation",
    "create": "Legacy ACL tokens",
    "update": "Legacy ACL tokens",
    "destroy": "Legacy ACL tokens",
    "info": "Legacy ACL tokens",
    "clone": "Legacy ACL tokens",
    "list": "Legacy ACL tokens",
}
LINK_FIELDS = ("ID", "Name")


def _canonical(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Field names matched case-insensitively, as Go's JSON decoder does; others dropped."""
    names = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = names.get(str(key).lower())
        if name is not None:
            out[name] = value
    return out


def _object(request: IRequest, fields: tuple[str, ...] = ()) -> dict[str, Any]:
    body = json_body(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: the body must be a JSON object")
    out = _canonical(body, fields)
    links = out.get("Policies")
    if isinstance(links, list):
        out["Policies"] = [_canonical(x, LINK_FIELDS) if isinstance(x, dict) else x for x in links]
    return out


def _bootstrap_reply(token: dict[str, Any]) -> dict[str, Any]:
    out = dict(token)
    out.pop("ModifyIndex", None)
    out["ModifyIndex"] = token.get("ModifyIndex", 0)
    return {"ID": token.get("SecretID", ""), **out}


@attrs.define
class ACLRoutes:
    """``/v1/acl/*`` over ``ctx.rpc`` (``ACL.*``)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/acl/",)

    ctx: APIContext

    @app.route("/v1/acl/<string:family>", methods=["GET", "PUT", "POST", "DELETE"])
    @app.route("/v1/acl/<string:family>/<path:rest>", methods=["GET", "PUT", "POST", "DELETE"])
    @endpoint
    async def unsupported(self, request: IRequest, family: str, rest: str = "") -> bytes:
        what = UNSUPPORTED.get(family)
        if what is None:
            raise HTTPError(404, "404 page not found")
        raise HTTPError(404, f"{what} are not supported by this server")

    # -- bootstrap and replication -------------------------------------------------------------

    @app.route("/v1/acl/bootstrap", methods=["PUT"])
    @endpoint
    async def bootstrap(self, request: IRequest) -> bytes:
        _object(request)  # py-consul sends {} (a later BootstrapSecret is not supported)
        token = await self.ctx.rpc("ACL.BootstrapTokens", write_args(request, self.ctx))
        return json_reply(request, _bootstrap_reply(token))

    @app.route("/v1/acl/replication", methods=["GET"])
    @endpoint
    async def replication(self, request: IRequest) -> bytes:
        reply = await self.ctx.rpc("ACL.ReplicationStatus", query_args(request, self.ctx))
        return json_reply(request, reply)

    # -- policies ------------------------------------------------------------------------------

    @app.route("/v1/acl/policy", methods=["PUT"])
    @endpoint
    async def policy_create(self, request: IRequest) -> bytes:
        body = _object(request, POLICY_FIELDS)
        if body.get("ID"):
            raise HTTPError(400, "Cannot specify the ID when creating a new policy")
        args = write_args(request, self.ctx)
        args["Policy"] = body
        return json_reply(request, await self.ctx.rpc("ACL.PolicySet", args))

    @app.route("/v1/acl/policies", methods=["GET"])
    @endpoint
    async def policy_list(self, request: IRequest) -> bytes:
        reply = await self.ctx.rpc("ACL.PolicyList", query_args(request, self.ctx))
        set_meta(request, reply)
        return json_reply(request, reply.get("Policies") or [])

    @app.route("/v1/acl/policy/name/<string:name>", methods=["GET"])
    @endpoint
    async def policy_read_by_name(self, request: IRequest, name: str) -> bytes:
        args = query_args(request, self.ctx)
        args["PolicyName"] = name
        return await self._policy_read(request, args)

    @app.route("/v1/acl/policy/<string:policy_id>", methods=["GET", "PUT", "DELETE"])
    @endpoint
    async def policy(self, request: IRequest, policy_id: str) -> bytes:
        if request.method == b"GET":
            args = query_args(request, self.ctx)
            args["PolicyID"] = policy_id
            return await self._policy_read(request, args)
        args = write_args(request, self.ctx)
        if request.method == b"DELETE":
            args["PolicyID"] = policy_id
            await self.ctx.rpc("ACL.PolicyDelete", args)
            return json_reply(request, True)
        body = _object(request, POLICY_FIELDS)
        if body.get("ID") and body["ID"] != policy_id:
            raise HTTPError(400, "Policy ID in URL and payload do not match")
        body["ID"] = policy_id
        args["Policy"] = body
        return json_reply(request, await self.ctx.rpc("ACL.PolicySet", args))

    async def _policy_read(self, request: IRequest, args: dict[str, Any]) -> bytes:
        reply = await self.ctx.rpc("ACL.PolicyRead", args)
        if reply.get("Policy") is None:
            raise HTTPError(403, NOT_FOUND)
        set_meta(request, reply)
        return json_reply(request, reply["Policy"])

    # -- tokens --------------------------------------------------------------------------------

    @app.route("/v1/acl/token", methods=["PUT"])
    @endpoint
    async def token_create(self, request: IRequest) -> bytes:
        args = write_args(request, self.ctx)
        args["ACLToken"] = _object(request, TOKEN_FIELDS)
        args["Create"] = True
        return json_reply(request, await self.ctx.rpc("ACL.TokenSet", args))

    @app.route("/v1/acl/tokens", methods=["GET"])
    @endpoint
    async def token_list(self, request: IRequest) -> bytes:
        args = query_args(request, self.ctx)
        policy = request.args.get(b"policy")
        if policy:
            args["Policy"] = policy[0].decode("utf-8", "replace")
        reply = await self.ctx.rpc("ACL.TokenList", args)
        set_meta(request, reply)
        return json_reply(request, reply.get("Tokens") or [])

    @app.route("/v1/acl/token/self", methods=["GET"])
    @endpoint
    async def token_self(self, request: IRequest) -> bytes:
        args = query_args(request, self.ctx)
        args["TokenID"] = args.get("Token") or ""
        args["TokenIDType"] = "secret"
        reply = await self.ctx.rpc("ACL.TokenRead", args)
        return json_reply(request, reply["Token"])

    @app.route("/v1/acl/token/<string:accessor>", methods=["GET", "PUT", "DELETE"])
    @endpoint
    async def token(self, request: IRequest, accessor: str) -> bytes:
        if request.method == b"GET":
            args = query_args(request, self.ctx)
            args["TokenID"] = accessor
            args["TokenIDType"] = "accessor"
            reply = await self.ctx.rpc("ACL.TokenRead", args)
            if reply.get("Token") is None:
                raise HTTPError(403, NOT_FOUND)
            set_meta(request, reply)
            return json_reply(request, reply["Token"])
        args = write_args(request, self.ctx)
        if request.method == b"DELETE":
            args["TokenID"] = accessor
            await self.ctx.rpc("ACL.TokenDelete", args)
            return json_reply(request, True)
        body = _object(request, TOKEN_FIELDS)
        if body.get("AccessorID") and body["AccessorID"] != accessor:
            raise HTTPError(400, "Token Accessor ID in URL and payload do not match")
        body["AccessorID"] = accessor
        args["ACLToken"] = body
        args["Create"] = False
        return json_reply(request, await self.ctx.rpc("ACL.TokenSet", args))
