# -*- test-case-name: tests.unit.http,tests.integration.http -*-
"""``/v1/kv/<key>``: GET (``raw``, ``recurse``, ``keys``, ``separator``), PUT (``cas``, ``flags``),
DELETE (``recurse``, ``cas``), with the reference's status codes and messages."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, ClassVar

import attrs
from klein import Klein

from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    arg,
    body_reply,
    endpoint,
    has_arg,
    json_reply,
    query_args,
    set_header,
    text_reply,
    write_args,
)
from wanfedtx.http.family import family_app
from wanfedtx.http.limits import BodyCap, HTTPLimits
from wanfedtx.http.parking import ReadReply, read


def uint_arg(request: IRequest, name: str) -> int | None:
    value = arg(request, name)
    if value is None:
        return None
    if not value.isdigit() or int(value) >= 2**64:
        raise HTTPError(400, f"Invalid value for ?{name}: {value!r} (want an unsigned integer)")
    return int(value)


def _missing_key(key: str) -> None:
    if not key:
        raise HTTPError(400, "Missing key name")


def _conflicting(request: IRequest, *flags: str) -> None:
    present = [f for f in flags if has_arg(request, f)]
    if len(present) > 1:
        raise HTTPError(400, "Conflicting flags: " + ", ".join(present))


def render_keys(request: IRequest, reply: dict[str, Any]) -> bytes:
    if not reply["Keys"]:
        return text_reply(request, 404, "")
    return json_reply(request, reply["Keys"])


def render_entries(request: IRequest, reply: dict[str, Any]) -> bytes:
    entries = reply["Entries"]
    if not entries:
        return text_reply(request, 404, "")
    return json_reply(request, entries)


def render_raw(request: IRequest, reply: dict[str, Any]) -> bytes:
    entries = reply["Entries"]
    if not entries:
        return text_reply(request, 404, "")
    set_header(request, "X-Content-Type-Options", "nosniff")
    return body_reply(request, 200, "text/plain; charset=utf-8", bytes(entries[0]["Value"] or b""))


@attrs.define
class KVRoutes:
    """``/v1/kv/<key>`` over ``ctx.rpc`` (``KVS.*``)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/kv/",)

    ctx: APIContext

    @app.route("/v1/kv/", methods=["GET", "PUT", "DELETE"])
    @app.route("/v1/kv/<path:key>", methods=["GET", "PUT", "DELETE"])
    @endpoint
    def kv(
        self, request: IRequest, key: str = ""
    ) -> Coroutine[Any, Any, bytes] | ReadReply:
        method = request.method
        if method == b"GET":
            if has_arg(request, "keys"):
                return self.get_keys(request, key)
            return self.get(request, key)
        if method == b"PUT":
            return self.put(request, key)
        return self.delete(request, key)

    def get_keys(self, request: IRequest, prefix: str) -> ReadReply:
        ctx = self.ctx
        args = query_args(request, ctx)
        args.update(Prefix=prefix, Seperator=arg(request, "separator") or "")
        return read(request, ctx, "KVS.ListKeys", args, render_keys)

    def get(self, request: IRequest, key: str) -> ReadReply:
        ctx = self.ctx
        args = query_args(request, ctx)
        args["Key"] = key
        if has_arg(request, "recurse"):
            method = "KVS.List"
        else:
            _missing_key(key)
            method = "KVS.Get"
        render = render_raw if has_arg(request, "raw") else render_entries
        return read(request, ctx, method, args, render)

    async def put(self, request: IRequest, key: str) -> bytes:
        ctx = self.ctx
        _missing_key(key)
        _conflicting(request, "cas", "acquire", "release")
        if has_arg(request, "acquire") or has_arg(request, "release"):
            raise HTTPError(
                400, "?acquire and ?release need sessions, which this server does not implement"
            )
        flags = uint_arg(request, "flags") or 0
        cas = uint_arg(request, "cas")
        length = request.getHeader("Content-Length")
        # The Site's limits (from config) when served by the agent; the channel has already
        # refused bodies over them before they were read.
        site_limits = getattr(getattr(request, "site", None), "http_limits", None)
        limit = (
            site_limits.kv_max_value_size
            if isinstance(site_limits, HTTPLimits)
            else ctx.kv_max_value_size
        )
        content = request.content
        value = content.read(limit + 1) if content is not None else b""
        size = int(length) if length and length.isdigit() else len(value)
        if size > limit or len(value) > limit:
            cap = BodyCap(limit, "limits.kv_max_value_size")
            raise HTTPError(413, cap.too_large(max(size, len(value))))
        args = write_args(request, ctx)
        args["Op"] = "set" if cas is None else "cas"
        args["DirEnt"] = {"Key": key, "Value": value, "Flags": flags, "ModifyIndex": cas or 0}
        return json_reply(request, await ctx.rpc("KVS.Apply", args))

    async def delete(self, request: IRequest, key: str) -> bytes:
        ctx = self.ctx
        _conflicting(request, "recurse", "cas")
        args = write_args(request, ctx)
        if has_arg(request, "recurse"):
            args.update(Op="delete-tree", DirEnt={"Key": key})
        else:
            _missing_key(key)
            cas = uint_arg(request, "cas")
            if cas is None:
                args.update(Op="delete", DirEnt={"Key": key})
            else:
                args.update(Op="delete-cas", DirEnt={"Key": key, "ModifyIndex": cas})
        return json_reply(request, await ctx.rpc("KVS.Apply", args))
