# -*- test-case-name: tests.unit.acl.test_acl_agent_tokens -*-
"""``PUT /v1/agent/token/<kind>``: replace one of the agent's ACL tokens at run time.

As Consul's: ``401 ACL support disabled`` with ACLs off; the ACL gate of the agent endpoints
(``wanfedtx.http.aclgate``) requires ``acl:write``; the body is ``{"Token": "<secret>"}``
(``400 Request decode failed: ...`` otherwise); an unknown kind is ``404 Token "<kind>" is
unknown``; success is an empty 200. The kinds and persistence are
:class:`wanfedtx.acl.tokens.AgentTokens`'. :func:`wire_agent_tokens` points the agent's parts
that hold a copy of a token (the HTTP API's default token, anti-entropy, ACL and
federation-state replication) at the new value when it changes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
from klein import Klein
from twisted.logger import Logger

from wanfedtx.acl.tokens import AgentTokens, PersistError, UnknownTokenKind
from wanfedtx.http.common import HTTPError, IRequest, endpoint, json_body, text_reply
from wanfedtx.http.family import family_app

log = Logger(namespace="agent")


@attrs.define
class AgentTokenRoutes:
    """``/v1/agent/token/<kind>`` over the agent's :class:`AgentTokens`."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/agent/token/",)

    tokens: AgentTokens
    acls_enabled: bool

    @app.route("/v1/agent/token/<string:kind>", methods=["PUT"])
    @endpoint
    async def set_token(self, request: IRequest, kind: str) -> bytes:
        if not self.acls_enabled:
            raise HTTPError(401, "ACL support disabled")
        body = json_body(request)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise HTTPError(400, "Request decode failed: the body must be a JSON object")
        fields = {str(k).lower(): v for k, v in body.items()}
        secret = fields.get("token", "")
        if secret is None:
            secret = ""
        if not isinstance(secret, str):
            raise HTTPError(400, "Request decode failed: Token must be a string")
        try:
            self.tokens.set(kind, secret)
        except UnknownTokenKind as exc:
            raise HTTPError(404, str(exc)) from None
        except PersistError as exc:
            log.error("{error}", error=str(exc))
            raise HTTPError(500, str(exc)) from None
        log.info("Updated agent's ACL token: token={kind}", kind=kind)
        return text_reply(request, 200, "")


def wire_agent_tokens(agent: Any, tokens: AgentTokens, families: list[Any]) -> None:
    """Keep the copies of the agent's tokens current (see the module docstring)."""
    contexts = {id(c): c for f in families if (c := getattr(f, "ctx", None)) is not None}

    def changed(field: str) -> None:
        if field == "default":
            for ctx in contexts.values():
                ctx.default_token = tokens.default
        if field in ("default", "agent"):
            for part in (agent.catalog, agent.client):
                ae = getattr(part, "ae", None) if part is not None else None
                if ae is None:
                    continue
                ae.agent_token = tokens.agent
                if ae.running:
                    ae.sync_full()  # as Consul: a new default/agent token triggers a full sync
        if field == "replication":
            if agent.acl is not None:
                agent.acl.set_replication_token(tokens.replication)
            # federation-state replication and anti-entropy, the secondary's Connect CA
            for part in (agent.federation, getattr(agent, "connect_ca", None)):
                if part is None or not hasattr(part, "replication_token"):
                    continue
                part.replication_token = tokens.replication
                leader = getattr(part, "leader", None)
                for routine in getattr(leader, "routines", None) or []:
                    if hasattr(routine, "token"):
                        routine.token = tokens.replication

    tokens.subscribe(changed)
