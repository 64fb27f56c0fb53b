"""Ctrl-C for the commands that run until interrupted (``monitor``, ``gateway``, ``demo``).

A process started as a background job of a non-interactive shell (``cmd &`` in a script,
``nohup``) begins with SIGINT ignored, and Python then never raises ``KeyboardInterrupt`` (nor
does Twisted's reactor install its SIGINT handler, which it only does over Python's default).
Consul's commands stop on SIGINT however they were started (Go's ``signal.Notify`` takes an
ignored signal back), so these commands restore Python's default handler before they block.
"""

from __future__ import annotations

import signal


def stop_on_ctrl_c() -> None:
    """Make SIGINT raise ``KeyboardInterrupt`` again (and let a reactor take it over)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
