"""The ``/ui`` family (the federation page's static files) alone and mounted in the agent's API:
the index, each shipped asset with its content type, 404 for anything else (no path escapes
the package), the ``/ui`` redirect, and no asset loading anything from another origin."""

from __future__ import annotations

import re
from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.web.resource import IResource

from wanfedtx.http.app import API
from wanfedtx.http.status import StatusRoutes
from wanfedtx.http.ui import UIRoutes, load_assets

BASE = "http://127.0.0.1:8500"


@attrs.define
class Reply:
    code: int
    headers: Any
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


def call(resource: IResource, method: str, path: str) -> Reply:
    stub = StubTreq(resource)
    d = stub.request(method, BASE + path, allow_redirects=False)
    stub.flush()
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, f"{method} {path} did not answer"
    content: list[bytes] = []
    stub.content(got[0]).addCallback(content.append)
    stub.flush()
    return Reply(got[0].code, got[0].headers, content[0])


def test_the_package_ships_the_page() -> None:
    assets = load_assets()
    assert set(assets) >= {"index.html", "ui.css", "ui.js"}
    assert assets["index.html"][0] == "text/html; charset=utf-8"
    assert b'<script src="ui.js">' in assets["index.html"][1]


def test_index_and_assets_are_served() -> None:
    resource = UIRoutes().app.resource()
    index = call(resource, "GET", "/ui/")
    assert index.code == 200
    assert index.header("Content-Type") == "text/html; charset=utf-8"
    assert b"wanfed federation" in index.body
    js = call(resource, "GET", "/ui/ui.js")
    assert js.code == 200 and js.header("Content-Type") == "text/javascript; charset=utf-8"
    assert b"/v1/internal/federation-states" in js.body
    css = call(resource, "GET", "/ui/ui.css")
    assert css.code == 200 and css.header("Content-Type") == "text/css; charset=utf-8"
    assert css.header("X-Content-Type-Options") == "nosniff"
    assert "default-src 'self'" in (index.header("Content-Security-Policy") or "")


def test_unknown_files_and_escapes_are_404() -> None:
    resource = UIRoutes().app.resource()
    for path in ("/ui/nope.js", "/ui/__init__.py", "/ui/..%2F..%2Fui.py", "/ui/a/b.js"):
        reply = call(resource, "GET", path)
        assert reply.code == 404, path
        assert reply.body == b"404 page not found"
    assert call(resource, "POST", "/ui/").code == 405


def test_mounted_in_the_api_beside_other_families() -> None:
    api = API([StatusRoutes(ctx=None), UIRoutes()])  # type: ignore[arg-type]
    resource = api.resource()
    redirect = call(resource, "GET", "/ui")
    assert redirect.code in (301, 308)
    assert (redirect.header("Location") or "").endswith("/ui/")
    assert call(resource, "GET", "/ui/").code == 200
    assert call(resource, "GET", "/ui/ui.js").code == 200
    assert call(resource, "GET", "/uix").code == 404


def test_no_asset_loads_from_another_origin() -> None:
    for name, (_, body) in load_assets().items():
        text = body.decode("utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert not re.search(r"fetch\(\s*[\"']https?:", text), name
        assert "@import" not in text, name


def test_setup_cfg_ships_every_asset_in_the_wheel() -> None:
    import configparser
    import fnmatch
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["wanfedtx.http.static.ui"]
                .split(",") if p.strip()]
    for name in load_assets():
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name
    manifest = (root / "MANIFEST.in").read_text()
    assert "recursive-include wanfedtx/http/static" in manifest
