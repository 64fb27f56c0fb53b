# -*- test-case-name: tests.unit.http.test_http_families -*-
"""The agent's HTTP API: route families composed into one resource with ``branch=True`` routes.

Each family (``wanfedtx.http.family``) is a class with its own Klein app and its context on
``self``; :class:`API` mounts each one under its ``prefixes`` on a root Klein app, one
``branch=True`` route per prefix (``/v1/kv/`` routes ``/v1/kv/`` and ``/v1/kv/<rest>``). The
branch hands the request to the family's resource with the whole path, so the family routes it
as if it were alone at the site's root: its own rules answer, and its own 404/405 handlers
answer what they do not match (paths under no prefix get the root's ``404 page not found``). A
prefix names whole segments (``/v1/status`` matches ``/v1/status/leader``, not
``/v1/statusx``), ends with ``/`` only where the family has a rule there (``/v1/kv/``; the path
without the slash then goes to the family too, whose rule redirects it), and belongs to one
family. The API is served at the site's root.

The root Klein app decides which family a path belongs to; :class:`API`'s resource answers the
common case (the path is a prefix's segments followed by a non-empty segment, or the prefix
itself) with one dict lookup on the path's segments instead of a second Klein dispatch per
request, and hands every other path to the root Klein app. The unit tests check, over random
paths, that the lookup never picks another family than the root's routes would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from klein import Klein
from twisted.web.resource import IResource
from twisted.web.server import Request
from werkzeug.routing import Rule
from zope.interface import implementer

from wanfedtx.http.family import RouteFamily, family_app


class API:
    """Route families under one root; ``resource()`` is what the agent's Site serves."""

    def __init__(self, families: Iterable[RouteFamily]) -> None:
        self.families = tuple(families)
        self.root = family_app()
        # prefix segments -> (family resource, the prefix ends with "/")
        self.by_prefix: dict[tuple[bytes, ...], tuple[IResource, bool]] = {}
        self.by_endpoint: dict[str, IResource] = {}  # the root's endpoints -> family resource
        for family in self.families:
            resource = mount(self.root, family)
            for prefix in family.prefixes:
                name = _endpoint(family, prefix)
                for endpoint in (name, name + "_branch", name + ":bare"):
                    self.by_endpoint[endpoint] = resource
                key = tuple(s.encode() for s in prefix.strip("/").split("/"))
                for other in self.by_prefix:
                    n = min(len(key), len(other))
                    if key[:n] == other[:n]:
                        raise ValueError(f"HTTP route prefix {prefix!r} nests with another")
                self.by_prefix[key] = (resource, prefix.endswith("/"))
        self.lengths = sorted({len(key) for key in self.by_prefix})
        self._resource = _Root(self)

    def resource(self) -> IResource:
        return self._resource

    def pick(self, postpath: Sequence[bytes]) -> IResource | None:
        """The family resource the root's branch routes give ``postpath`` in the common case;
        None: ask the root Klein app (unknown paths, empty segments after the prefix)."""
        for n in self.lengths:
            if len(postpath) < n:
                break
            entry = self.by_prefix.get(tuple(postpath[:n]))
            if entry is None:
                continue
            resource, slash = entry
            if len(postpath) == n or postpath[n]:
                return resource
            if slash and len(postpath) == n + 1:
                return resource
            return None
        return None

    def family_at(self, prefix: str) -> RouteFamily | None:
        """The family mounted under ``prefix`` (exactly as it names it), None if none is."""
        for family in self.families:
            if prefix in family.prefixes:
                return family
        return None

    def rules(self) -> Iterator[Rule]:
        """Every family's routes (path, methods), as each family's werkzeug map holds them."""
        for family in self.families:
            yield from family.app.url_map.iter_rules()


def mount(root: Klein, family: RouteFamily) -> IResource:
    """Route every prefix of ``family`` (and what is under it) on ``root`` to the family's
    resource (returned)."""
    resource: IResource = family.app.resource()
    taken = {rule.rule for rule in root.url_map.iter_rules()}
    for prefix in family.prefixes:
        if prefix in taken or prefix.rstrip("/") + "/<path:__rest__>" in taken:
            raise ValueError(f"HTTP route prefix {prefix!r} is mounted twice")
        name = _endpoint(family, prefix)
        root.route(prefix, branch=True, endpoint=name)(_branch(resource))
        if prefix.endswith("/"):
            # The path without the slash goes to the family too, which redirects it to the
            # slash only for the methods its rule there allows (as werkzeug does alone).
            root.route(prefix[:-1], endpoint=name + ":bare")(_branch(resource))
    return resource


def _endpoint(family: RouteFamily, prefix: str) -> str:
    return f"{type(family).__module__}.{type(family).__qualname__}:{prefix}"


def _branch(resource: IResource) -> Any:
    def to_family(request: Any) -> IResource:
        # Klein moved the prefix's segments to prepath; the family routes on the whole path.
        request.postpath = request.prepath + request.postpath
        request.prepath = []
        return resource

    return to_family


@implementer(IResource)
class _Root:
    """The API's resource: :meth:`API.pick`'s family, else the root Klein app."""

    isLeaf = True

    def __init__(self, api: API) -> None:
        self._api = api
        #: the API this resource serves (the KV fast path finds its routes' context here)
        self.api = api
        self._klein: IResource = api.root.resource()

    def render(self, request: Request) -> Any:
        family = self._api.pick(request.postpath or ()) if not request.prepath else None
        resource: Any = family or self._klein
        return resource.render(request)

    def getChildWithDefault(self, name: bytes, request: Request) -> _Root:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the API's routes are its families")
