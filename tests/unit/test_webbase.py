"""``wanfedtx.webbase`` only re-types Twisted's web classes: at run time they are the same."""

from __future__ import annotations

from twisted.web import http, resource, server

from wanfedtx import webbase


def test_the_names_are_twisteds_classes() -> None:
    assert webbase.HTTPChannel is http.HTTPChannel
    assert webbase.Request is server.Request
    assert webbase.Resource is resource.Resource
    assert webbase.Site is server.Site
