# -*- test-case-name: tests.unit.http.test_http_ui -*-
"""``/ui``: the federation page, static files shipped in the package and served by the agent.

The page (``wanfedtx/http/static/ui/``: ``index.html``, ``ui.css``, ``ui.js``) needs no build
step and loads nothing from elsewhere; its script reads the agent's own HTTP API
(``/v1/agent/members?wan=1``, ``/v1/internal/federation-states``, ``/v1/status/*?dc=``,
``/v1/health/service/<gateway>?dc=``) with blocking queries and draws one card per datacenter.

``GET /ui`` redirects to ``/ui/``, which answers ``index.html``; ``/ui/<file>`` answers one of the
shipped files (any other name: ``404 page not found``). The files are read once, when the family
is built, so a request never touches the disk. Every answer carries a Content-Security-Policy
that allows only the agent's own origin.
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

import attrs
from klein import Klein

from wanfedtx.http.common import IRequest, body_reply, set_header, text_reply
from wanfedtx.http.family import family_app

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# Everything from the agent itself: no inline script, no other origin, not framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)


def load_assets(package: str = "wanfedtx.http.static.ui") -> dict[str, tuple[str, bytes]]:
    """File name -> (content type, bytes) of every servable file shipped in ``package``."""
    assets: dict[str, tuple[str, bytes]] = {}
    for entry in resources.files(package).iterdir():
        name = entry.name
        suffix = name[name.rfind("."):] if "." in name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            assets[name] = (CONTENT_TYPES[suffix], entry.read_bytes())
    return assets


@attrs.define
class UIRoutes:
    """``/ui/`` and its static files."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/ui/",)

    assets: dict[str, tuple[str, bytes]] = attrs.field(factory=load_assets)

    @app.route("/ui/", methods=["GET"])
    def index(self, request: IRequest) -> bytes:
        return self._file(request, "index.html")

    @app.route("/ui/<name>", methods=["GET"])
    def asset(self, request: IRequest, name: str) -> bytes:
        return self._file(request, name)

    def _file(self, request: IRequest, name: str) -> bytes:
        found = self.assets.get(name)
        if found is None:
            return text_reply(request, 404, "404 page not found")
        content_type, body = found
        set_header(request, "Cache-Control", "no-cache")
        set_header(request, "X-Content-Type-Options", "nosniff")
        set_header(request, "Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return body_reply(request, 200, content_type, body)
