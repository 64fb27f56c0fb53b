"""The self-pipe that wakes a gateway epoll thread from another thread.

Both epoll relay threads (``loop.py`` and ``splice.py``) register the read end in their epoll set;
other threads write a byte to make ``poll`` return, and the loop thread drains the pipe before it
looks at the work handed over under its lock.
"""

from __future__ import annotations

import os
import select


class WakePipe:
    """A non-blocking pipe whose read end sits in an epoll set."""

    def __init__(self, ep: select.epoll) -> None:
        self.fd, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        ep.register(self.fd, select.EPOLLIN)

    def wake(self, tag: bytes) -> None:
        """Make the epoll thread's ``poll`` return (any thread)."""
        os.write(self._w, tag)

    def drain(self) -> None:
        """Read every pending wake-up byte (loop thread)."""
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self.fd, self._w):
            os.close(fd)
