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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from klein import Klein
from twisted.web.resource import IResource
from werkzeug.routing import Rule

from wanfedtx.http.family import RouteFamily, family_app


class API:
    """Route families under one root; ``resource()`` is what the agent's Site serves."""

    def __init__(self, families: Iterable[RouteFamily]) -> None:
        self.families = tuple(families)
        self.root = family_app()
        for family in self.families:
            mount(self.root, family)

    def resource(self) -> IResource:
        resource: IResource = self.root.resource()
        return resource

    def rules(self) -> Iterator[Rule]:
        """Every family's routes (path, methods), as each family's werkzeug map holds them."""
        for family in self.families:
            yield from family.app.url_map.iter_rules()


def mount(root: Klein, family: RouteFamily) -> None:
    """Route every prefix of ``family`` (and what is under it) on ``root`` to the family."""
    resource: IResource = family.app.resource()
    taken = {rule.rule for rule in root.url_map.iter_rules()}
    for prefix in family.prefixes:
        if prefix in taken or prefix.rstrip("/") + "/<path:__rest__>" in taken:
            raise ValueError(f"HTTP route prefix {prefix!r} is mounted twice")
        name = f"{type(family).__module__}.{type(family).__qualname__}:{prefix}"
        root.route(prefix, branch=True, endpoint=name)(_branch(resource))
        if prefix.endswith("/"):
            # The path without the slash goes to the family too, which redirects it to the
            # slash only for the methods its rule there allows (as werkzeug does alone).
            root.route(prefix[:-1], endpoint=name + ":bare")(_branch(resource))


def _branch(resource: IResource) -> Any:
    def to_family(request: Any) -> IResource:
        # Klein moved the prefix's segments to prepath; the family routes on the whole path.
        request.postpath = request.prepath + request.postpath
        request.prepath = []
        return resource

    return to_family
