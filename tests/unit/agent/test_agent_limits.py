"""The agent's own process limits: open files raised to the hard limit, somaxconn backlog."""

from __future__ import annotations

import resource
from pathlib import Path

from wanfedtx.agent import limits


def test_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lowered = min(256, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        before, after = limits.raise_open_files_limit()
        assert before == lowered
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == after
        assert after == (hard if hard != resource.RLIM_INFINITY else max(lowered, 1 << 20))
        assert limits.raise_open_files_limit() == (after, after)  # already there: no change
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_listen_backlog_reads_somaxconn(tmp_path: Path) -> None:
    f = tmp_path / "somaxconn"
    f.write_text("8192\n")
    assert limits.listen_backlog(f) == 8192
    f.write_text("999999\n")
    assert limits.listen_backlog(f) == 65535
    f.write_text("junk")
    assert limits.listen_backlog(f) == limits.DEFAULT_BACKLOG
    assert limits.listen_backlog(tmp_path / "missing") == limits.DEFAULT_BACKLOG
