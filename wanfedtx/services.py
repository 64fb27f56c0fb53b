# -*- test-case-name: tests.unit.test_services -*-
"""Twisted's ``Service`` and ``MultiService`` with the signatures their methods really have.

``twisted.application.service`` is not annotated, so under ``mypy --strict`` every
``super().startService()``, ``setName``, ``setServiceParent`` or ``MultiService()`` is an untyped
call. Every wanfedtx service derives from the two names here instead: at run time they ARE
Twisted's classes (no wrapper, no extra frame); only the type checker sees the annotated
declarations below.

``MultiService.stopService`` fires with the ``DeferredList`` results of the children; callers only
wait for it, so it is declared ``Deferred[Any]`` and subclasses return ``Deferred[None]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.application import service as _service

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from twisted.application.service import IService, IServiceCollection
    from twisted.internet.defer import Deferred

    class Service(_service.Service):
        def setName(self, name: str) -> None: ...
        def setServiceParent(self, parent: IServiceCollection) -> None: ...
        def disownServiceParent(self) -> Deferred[None] | None: ...
        def privilegedStartService(self) -> None: ...
        def startService(self) -> None: ...
        def stopService(self) -> Deferred[None] | None: ...

    class MultiService(_service.MultiService, Service):
        def __init__(self) -> None: ...
        def privilegedStartService(self) -> None: ...
        def startService(self) -> None: ...
        def stopService(self) -> Deferred[Any]: ...
        def getServiceNamed(self, name: str) -> IService: ...
        def __iter__(self) -> Iterator[IService]: ...
        def addService(self, service: IService) -> None: ...
        def removeService(self, service: IService) -> Deferred[None] | None: ...

else:
    Service = _service.Service
    MultiService = _service.MultiService

__all__ = ["MultiService", "Service"]
