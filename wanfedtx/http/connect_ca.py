# -*- test-case-name: tests.unit.http.test_http_connect_ca -*-
"""The Connect CA's HTTP API, over ``ctx.rpc`` (``ConnectCA.*``), as the reference's:

* ``GET /v1/connect/ca/roots`` (blocking, ``?dc``, ``?stale``): ``IndexedCARoots``
  (``ActiveRootID``, ``TrustDomain``, ``Roots``; an empty list is ``[]``).
* ``GET /v1/agent/connect/ca/roots``: the same for the agent's own datacenter.
* ``GET /v1/connect/ca/configuration``: the stored ``CAConfiguration``.
* ``PUT /v1/connect/ca/configuration``: ``ConnectCA.ConfigurationSet`` with the body
  (``Provider``, ``Config``, ``State``, ``ForceWithoutCrossSigning``); 200 with an empty body.
  A new root rotates (``operator:write``).
* ``GET /v1/agent/connect/ca/leaf/<service>``: from the agent's leaf cache
  (:class:`~wanfedtx.connect.leafcache.LeafCache`: ``X-Cache: HIT|MISS``, ``Age`` on a hit,
  ``X-Consul-Index``, blocking with ``?index``/``?wait``); a miss makes an EC P-256 key and a
  CSR for ``spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>`` and has a server sign
  it (``ConnectCA.Sign``); the reply is the ``IssuedCert`` with ``PrivateKeyPEM``. A cluster
  without roots gives ``cluster has no CA bootstrapped yet``.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import attrs
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from wanfedtx.connect import ca
from wanfedtx.connect.endpoints import RATE_LIMITED
from wanfedtx.connect.errors import CAError, CSRError
from wanfedtx.connect.leafcache import NO_CA, LeafCache
from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    endpoint,
    json_body,
    json_reply,
    query_args,
    set_header,
    write_args,
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
    #: The clock of the leaf cache (the global reactor when not given).
    clock: IReactorTime | None = None
    _leaves: LeafCache | None = attrs.field(default=None, init=False)

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

    @app.route("/v1/connect/ca/configuration", methods=["PUT"])
    @endpoint
    async def configuration_set(self, request: IRequest) -> bytes:
        body = json_body(request)
        if not isinstance(body, dict):
            raise HTTPError(400, "Request decode failed: the body must be a JSON object")
        args = write_args(request, self.ctx)
        args["Config"] = body
        await self.ctx.rpc("ConnectCA.ConfigurationSet", args)
        return b""

    def leaves(self) -> LeafCache:
        """This agent's leaf cache (made on first use)."""
        if self._leaves is None:
            clock = self.clock
            if clock is None:
                from twisted.internet import reactor

                clock = cast(IReactorTime, reactor)
            self._leaves = LeafCache(self.ctx.rpc, clock, self.ctx.datacenter)
        return self._leaves

    @app.route("/v1/agent/connect/ca/leaf/<path:service>", methods=["GET"])
    @endpoint
    async def leaf(self, request: IRequest, service: str) -> bytes:
        try:
            ca.check_service_name(service)
        except CSRError as exc:
            raise HTTPError(400, str(exc)) from None
        q = query_args(request, self.ctx)
        cache = self.leaves()
        try:
            entry, hit = await cache.get(service, str(q["Token"]), int(q["MinQueryIndex"]),
                                         int(q["MaxQueryTime"]) / 1e9)
        except CAError as exc:
            if str(exc) == NO_CA:
                raise HTTPError(500, NO_CA) from None
            if RATE_LIMITED in str(exc):
                raise HTTPError(429, RATE_LIMITED) from None
            raise
        except Exception as exc:
            if RATE_LIMITED in str(exc):
                raise HTTPError(429, RATE_LIMITED) from None
            raise
        set_header(request, "X-Cache", "HIT" if hit else "MISS")
        if hit:
            age = max(0, int(cache.clock.seconds() - entry.fetched_at))
            set_header(request, "Age", str(age))
        set_header(request, "X-Consul-Index", str(entry.index))
        return json_reply(request, entry.issued)
