# -*- test-case-name: tests.unit.test_logs,tests.integration.agent.test_agent_lifecycle_proc -*-
"""The root service the wanfed twistd plugin returns: the agent's logging under twistd, and a
start-up error as one line instead of a traceback."""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.logger import ILogObserver
from twisted.python.components import Componentized

from wanfedtx.cli.agent import STARTUP_ERRORS, startup_error_text
from wanfedtx.services import MultiService, Service


class TwistdRoot(MultiService):
    """Wraps the agent for twistd.

    Logging: attached to twistd's application, it registers the agent's Consul-style observer
    (``wanfedtx.logs.twistd_log_observer``: the configured ``log_level``, written where twistd
    would write) as the application's ``ILogObserver`` component, which twistd uses instead of
    its own print-everything observer. So ``twistd -n wanfed`` at ``log_level = "info"`` prints
    no DEBUG line and Twisted's ``Starting factory ...`` chatter stays at DEBUG. With
    ``--logger``/``--syslog`` the observer is None and twistd's choice stands.

    Start-up: twistd starts services before it runs the reactor; a listener, TLS or file error
    there is printed as one line and the process exits 1 at once (twistd could not stop what
    did start, such as raft's writer thread).
    """

    def __init__(self, child: Service, observer: ILogObserver | None,
                 program: str = "twistd wanfed") -> None:
        super().__init__()
        self.observer = observer
        self.program = program
        child.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        if (self.observer is not None and isinstance(parent, Componentized)
                and parent.getComponent(ILogObserver, None) is None):  # type: ignore[no-untyped-call]
            parent.setComponent(ILogObserver, self.observer)  # type: ignore[no-untyped-call]
        super().setServiceParent(parent)

    def startService(self) -> None:
        try:
            super().startService()
        except STARTUP_ERRORS as e:
            print(f"{self.program}: Error starting agent: {startup_error_text(e)}",
                  file=sys.__stderr__, flush=True)
            sys.stdout.flush()
            os._exit(1)
