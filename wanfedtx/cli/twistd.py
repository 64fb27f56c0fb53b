# -*- test-case-name: tests.unit.test_logs -*-
"""The root service the twistd plugins return, so the agent's log settings apply under twistd."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService
from twisted.logger import ILogObserver
from twisted.python.components import Componentized


class TwistdLogging(MultiService):
    """The root service a twistd plugin returns: it makes the agent's log level and format
    apply under twistd.

    Attached to twistd's application, it registers the agent's Consul-style observer as the
    application's ``ILogObserver`` component (twistd uses that component instead of its own
    print-everything observer), writing where twistd would have written. So ``twistd -n
    wanfed`` at ``log_level = "info"`` prints no DEBUG line, and Twisted's chatter (``Starting
    factory ...``) stays at DEBUG where it belongs.
    """

    def __init__(self, child: IService, observer: ILogObserver | None) -> None:
        """``observer``: :func:`wanfedtx.logs.twistd_log_observer` of twistd's options (None
        with ``--logger``/``--syslog``: twistd's own choice stands)."""
        super().__init__()  # type: ignore[no-untyped-call]
        self.observer = observer
        child.setServiceParent(self)  # type: ignore[no-untyped-call]

    def setServiceParent(self, parent: Any) -> None:
        if (self.observer is not None and isinstance(parent, Componentized)
                and parent.getComponent(ILogObserver, None) is None):  # type: ignore[no-untyped-call]
            parent.setComponent(ILogObserver, self.observer)  # type: ignore[no-untyped-call]
        super().setServiceParent(parent)  # type: ignore[no-untyped-call]
