# -*- test-case-name: tests.unit.http.test_http_connect_ca -*-
"""The Connect CA's HTTP API, over ``ctx.rpc`` (``ConnectCA.*``), as the reference's:

* ``GET /v1/connect/ca/roots`` (blocking, ``?dc``, ``?stale``): ``IndexedCARoots``
  (``ActiveRootID``, ``TrustDomain``, ``Roots``; an empty list is ``[]``).
* ``GET /v1/agent/connect/ca/roots``: the same for the agent's own datacenter.
* ``GET /v1/connect/ca/configuration``: the stored ``CAConfiguration``.
* ``GET /v1/agent/connect/ca/leaf/<service>``: the agent makes an EC P-256 key and a CSR for
  ``spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>`` and has a server sign it
  (``ConnectCA.Sign``); the reply is the ``IssuedCert`` with ``PrivateKeyPEM``. Every request
  issues a new leaf (there is no agent cache yet). A cluster without roots gives
  ``cluster has no CA bootstrapped yet``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
from klein import Klein

from wanfedtx.connect import ca
from wanfedtx.connect.endpoints import RATE_LIMITED
from wanfedtx.connect.errors import CSRError
from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    endpoint,
    json_reply,
    query_args,
    set_header,
    token,
)
from wanfedtx.http.family import family_app
from wanfedtx.http.parking import ReadReply, read

_ROOTS_KEYS = ("ActiveRootID", "TrustDomain", "Roots")


def render_roots(request: IRequest, reply: dict[str, Any]) -> bytes:
    out = {k: reply.get(k) for k in _ROOTS_KEYS}
    out["Roots"] = out["Roots"] or []
    return json_reply(request, out)


def render_config(request: IRequest, reply: dict[str, Any]) -> bytes:
    return json_reply(request, reply.get("Config") or {})


@attrs.define
class ConnectCARoutes:
    """``/v1/connect/ca/*`` and ``/v1/agent/connect/ca/*``."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/connect/ca", "/v1/agent/connect/ca")

    ctx: APIContext

    @app.route("/v1/connect/ca/roots", methods=["GET"])
    @endpoint
    def roots(self, request: IRequest) -> ReadReply:
        return read(request, self.ctx, "ConnectCA.Roots", query_args(request, self.ctx),
                    render_roots)

    @app.route("/v1/agent/connect/ca/roots", methods=["GET"])
    @endpoint
    def agent_roots(self, request: IRequest) -> ReadReply:
        args = query_args(request, self.ctx)
        args["Datacenter"] = self.ctx.datacenter
        return read(request, self.ctx, "ConnectCA.Roots", args, render_roots)

    @app.route("/v1/connect/ca/configuration", methods=["GET"])
    @endpoint
    def configuration(self, request: IRequest) -> ReadReply:
        return read(request, self.ctx, "ConnectCA.ConfigurationGet",
                    query_args(request, self.ctx), render_config)

    @app.route("/v1/agent/connect/ca/leaf/<path:service>", methods=["GET"])
    @endpoint
    async def leaf(self, request: IRequest, service: str) -> bytes:
        try:
            ca.check_service_name(service)
        except CSRError as exc:
            raise HTTPError(400, str(exc)) from None
        dc = self.ctx.datacenter
        roots = await self.ctx.rpc("ConnectCA.Roots", {
            "Datacenter": dc, "Token": token(request), "AllowStale": True})
        td = str(roots.get("TrustDomain") or "")
        if not td or not roots.get("Roots"):
            raise HTTPError(500, "cluster has no CA bootstrapped yet")
        key_pem, csr_pem = ca.make_leaf_csr(td, dc, service)
        try:
            issued = await self.ctx.rpc("ConnectCA.Sign", {
                "Datacenter": dc, "Token": token(request), "CSR": csr_pem})
        except Exception as exc:
            if RATE_LIMITED in str(exc):
                raise HTTPError(429, RATE_LIMITED) from None
            raise
        out = dict(issued)
        out["PrivateKeyPEM"] = key_pem
        set_header(request, "X-Cache", "MISS")
        set_header(request, "X-Consul-Index", str(max(1, int(out.get("ModifyIndex") or 1))))
        return json_reply(request, out)
