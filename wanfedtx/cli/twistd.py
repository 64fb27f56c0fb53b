# -*- test-case-name: tests.unit.test_logs -*-
"""The root service the twistd plugins return, so the agent's log settings apply under twistd."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.logger import ILogObserver
from twisted.python.components import Componentized

from wanfedtx.logs import make_observer, twistd_destination


class TwistdLogging(MultiService):
    """The root service a twistd plugin returns: it makes the agent's log level and format
    apply under twistd.

    Attached to twistd's application, it registers a Consul-style observer at ``level`` as the
    application's ``ILogObserver`` component (twistd uses that component instead of its own
    print-everything observer), writing where twistd would have written. So ``twistd -n
    wanfed`` at ``log_level = "info"`` prints no DEBUG line, and Twisted's chatter (``Starting
    factory ...``) stays at DEBUG where it belongs.
    """

    def __init__(self, child: IService, level: str, json: bool,
                 twistd_options: Mapping[str, Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.level, self.json, self.twistd_options = level, json, twistd_options
        child.setServiceParent(self)  # type: ignore[no-untyped-call]

    def setServiceParent(self, parent: Any) -> None:
        destination = twistd_destination(self.twistd_options)
        if (destination is not None and isinstance(parent, Componentized)
                and parent.getComponent(ILogObserver, None) is None):  # type: ignore[no-untyped-call]
            observer = make_observer(self.level, self.json, destination)
            parent.setComponent(ILogObserver, observer)  # type: ignore[no-untyped-call]
        super().setServiceParent(parent)  # type: ignore[no-untyped-call]
