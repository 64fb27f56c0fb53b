"""``wanfedtx.services`` only re-types Twisted's service classes: at run time they are the same."""

from __future__ import annotations

from twisted.application import service as twisted_service

from wanfedtx import services


def test_the_names_are_twisteds_classes() -> None:
    assert services.Service is twisted_service.Service
    assert services.MultiService is twisted_service.MultiService


def test_a_child_starts_and_stops_with_its_parent() -> None:
    parent = services.MultiService()
    child = services.Service()
    child.setName("child")
    child.setServiceParent(parent)
    assert parent.getServiceNamed("child") is child
    parent.startService()
    assert child.running
    d = parent.stopService()
    assert not child.running
    done: list[object] = []
    d.addCallback(done.append)
    assert done
