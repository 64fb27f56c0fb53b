# -*- test-case-name: tests.unit.acl.test_acl_http -*-
"""The ACL gate of the agent's own HTTP endpoints (``/v1/agent/*``), in front of the API.

The catalog, health, KV, internal and ACL routes are authorized by the RPC handlers they call;
the agent's endpoints act on this agent alone, so the gate checks them before they run, as
Consul's agent endpoints do: ``self``, ``metrics``, ``monitor`` need ``agent:read`` on this
node; ``reload``, ``join``, ``leave`` need ``agent:write``; ``force-leave`` needs
``operator:write``; a service registration needs ``service:write`` on its name, a check
registration ``node:write`` (node checks) or ``service:write`` (service checks); deregistering
and TTL updates need the same on the existing entry; reading one service needs
``service:read``. A refusal is ``403 Permission denied``, the endpoint never runs and nothing
is written. On a client agent the token is resolved by asking its servers (the answer waits
for them). The lists are filtered as Consul filters them (``members`` by ``node:read``,
``services`` by ``service:read``, ``checks`` by ``service:read`` or ``node:read``), with
``X-Consul-Results-Filtered-By-ACLs: true`` when something was dropped: the endpoint's JSON
answer is buffered, filtered and written once. The token is read as everywhere
(``X-Consul-Token``, ``?token=``, Bearer, then ``acl.tokens.default``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from wanfedtx import jsondecode
from wanfedtx.acl.authorizer import Authorizer
from wanfedtx.http.common import error_reply, set_header, text_reply, token

AGENT_READ = ("self", "metrics", "monitor", "host")
AGENT_WRITE = ("reload", "join", "leave", "maintenance")
CHECK_VERBS = ("deregister", "pass", "warn", "fail", "update")


class Denied(Exception):
    def __str__(self) -> str:
        return "Permission denied"


def _need(ok: bool) -> None:
    if not ok:
        raise Denied()


def _body(request: Request) -> dict[str, Any]:
    content = request.content
    if content is None:
        return {}
    raw = content.read()
    content.seek(0)
    try:
        value = jsondecode.loads(raw or b"{}")
    except ValueError:
        return {}  # the endpoint answers the decode error itself
    if not isinstance(value, dict):
        return {}
    return {str(k).lower(): v for k, v in value.items()}


@implementer(IResource)
class AgentACLGate:
    """Wraps the API resource; see the module docstring."""

    isLeaf = True

    def __init__(
        self,
        inner: IResource,
        authorizer: Callable[[str], Authorizer | Deferred[Authorizer]] | None,
        node: str,
        default_token: str | Callable[[], str],
        service_of: Callable[[str], str | None],
        check_service_of: Callable[[str], str | None],
    ) -> None:
        self.inner = inner
        self.authorizer = authorizer
        self.node = node
        self.default_token = default_token
        self.service_of = service_of
        self.check_service_of = check_service_of

    def putChild(self, path: bytes, child: IResource) -> None:
        self.inner.putChild(path, child)

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        return self

    def render(self, request: Request) -> Any:
        if self.authorizer is None:
            return _dispatch(self.inner, request)
        path = request.path.decode("utf-8", "replace")
        if not path.startswith("/v1/agent/"):
            return _dispatch(self.inner, request)
        rest = path[len("/v1/agent/") :]
        try:
            default = self.default_token
            resolved = self.authorizer(
                token(request) or (default if isinstance(default, str) else default())
            )
        except Exception as exc:  # ACL not found, Cannot resolve root ACL
            return error_reply(request, exc)
        if not isinstance(resolved, Deferred):
            return self._serve(resolved, request, rest)
        # a client agent asks its servers: answer once they have
        resolved.addCallbacks(
            lambda authz: self._serve(authz, request, rest),
            lambda failure: error_reply(request, failure),
        )
        resolved.addCallback(_finish, request)
        return NOT_DONE_YET

    def _serve(self, authz: Authorizer, request: Request, rest: str) -> Any:
        try:
            self.check(authz, request, rest)
        except Denied:
            return text_reply(request, 403, "Permission denied")
        keep = self.list_filter(authz, request, rest)
        if keep is not None:
            _filter_json(request, keep)
        return _dispatch(self.inner, request)

    def list_filter(self, authz: Authorizer, request: Request, rest: str) -> Keep | None:
        """The filter of the agent's list endpoints, None for the others."""
        if request.method != b"GET":
            return None

        def field(v: Any, name: str) -> str:
            return str(v.get(name) or "") if isinstance(v, dict) else ""

        if rest == "members":
            return lambda value: _keep_list(value, lambda m: authz.node_read(field(m, "Name")))
        if rest == "services":
            return lambda value: _keep_list(
                value, lambda s: authz.service_read(field(s, "Service"))
            )
        if rest == "checks":

            def check_ok(c: Any) -> bool:
                service = field(c, "ServiceName")
                if service:
                    return authz.service_read(service)
                return authz.node_read(field(c, "Node") or self.node)

            return lambda value: _keep_list(value, check_ok)
        return None

    def check(self, authz: Authorizer, request: Request, rest: str) -> None:
        parts = rest.split("/", 2)
        head = parts[0]
        tail = unquote(parts[-1]) if len(parts) > 1 else ""
        if head in AGENT_READ:
            _need(authz.agent_read(self.node))
        elif head in AGENT_WRITE:
            _need(authz.agent_write(self.node))
        elif head == "force-leave":
            _need(authz.operator_write())
        elif head == "token":
            _need(authz.acl_write())
        elif head == "service" and len(parts) >= 2 and parts[1] == "register":
            _need(authz.service_write(str(_body(request).get("name") or "")))
        elif head == "service" and len(parts) == 3 and parts[1] == "deregister":
            name = self.service_of(tail)
            if name is not None:
                _need(authz.service_write(name))
        elif head == "service" and len(parts) >= 2 and request.method == b"GET":
            name = self.service_of(unquote(rest[len("service/") :]))
            if name is not None:
                _need(authz.service_read(name))
        elif head == "check" and len(parts) >= 2 and parts[1] == "register":
            body = _body(request)
            sid = str(body.get("serviceid") or body.get("service_id") or "")
            if sid:
                name = self.service_of(sid)
                _need(authz.service_write(name if name is not None else sid))
            else:
                _need(authz.node_write(self.node))
        elif head == "check" and len(parts) == 3 and parts[1] in CHECK_VERBS:
            service = self.check_service_of(tail)
            _need(authz.service_write(service) if service else authz.node_write(self.node))


Keep = Callable[[Any], tuple[Any, bool]]


def _filter_json(request: Request, keep: Keep) -> None:
    """Buffer what the endpoint writes; on finish, filter a 200 JSON answer with ``keep``."""
    chunks: list[bytes] = []
    real_write: Callable[[bytes], None] = request.write
    real_finish: Callable[[], None] = request.finish

    def write(data: bytes) -> None:
        chunks.append(data)

    def finish() -> None:
        body = b"".join(chunks)
        if request.code == 200:
            try:
                value = json.loads(body)
            except ValueError:
                value = None
            if value is not None:
                kept, dropped = keep(value)
                if dropped:
                    body = json.dumps(kept).encode()
                    set_header(request, "Content-Length", str(len(body)))
                    set_header(request, "X-Consul-Results-Filtered-By-ACLs", "true")
        if body:
            real_write(body)
        real_finish()

    request.write = write  # type: ignore[method-assign]
    request.finish = finish  # type: ignore[method-assign]


def _keep_list(value: Any, ok: Callable[[Any], bool]) -> tuple[Any, bool]:
    if isinstance(value, list):
        kept = [v for v in value if ok(v)]
        return kept, len(kept) != len(value)
    if isinstance(value, dict):
        kept_map = {k: v for k, v in value.items() if ok(v)}
        return kept_map, len(kept_map) != len(value)
    return value, False


def _finish(result: Any, request: Request) -> None:
    """Write a body rendered after the fact (NOT_DONE_YET: the resource finishes itself)."""
    if result is NOT_DONE_YET or request.finished or getattr(request, "_disconnected", False):
        return
    if isinstance(result, bytes):
        request.write(result)
    request.finish()


def _dispatch(resource: IResource, request: Request) -> Any:
    """Traverse ``resource`` for the request's remaining path, then render, as Site does."""
    return getChildForRequest(resource, request).render(request)
