"""The agent's own process limits: open files raised to the hard limit, somaxconn backlog."""

from __future__ import annotations

import os
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


_MALLOC_PROBE = r"""
import ctypes, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc.mallinfo2.restype = MallInfo2

def mmapped(size):
    # whether a block of ``size`` bytes is served by mmap (one more mmapped region held)
    before = libc.mallinfo2().hblks
    p = libc.malloc(size)
    during = libc.mallinfo2().hblks
    libc.free(p)
    return during == before + 1

# glibc's dynamic threshold: freeing an 8 MiB mmapped block raises the threshold to 8 MiB
libc.free(libc.malloc(8 << 20))
print("before", mmapped(512 << 10))
sys.path[:0] = [sys.argv[1], sys.argv[2]]
{start}
print("after", mmapped(512 << 10))
"""


def _probe(start: str) -> str:
    import subprocess
    import sys

    here = Path(__file__).resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", _MALLOC_PROBE.replace("{start}", start),
         str(here.parents[3]), str(here.parents[2])],
        capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_malloc_mmap_threshold_is_fixed_so_large_blocks_go_back_to_the_kernel() -> None:
    out = _probe("from wanfedtx.agent import limits\n"
                 "print('set', limits.fix_malloc_mmap_threshold())")
    # Without the fix a 512 KiB block comes from the heap once an 8 MiB one was freed.
    assert out.split() == ["before", "False", "set", "True", "after", "True"], out


def test_a_starting_agent_fixes_the_malloc_mmap_threshold() -> None:
    """Through the agent: ``Agent.startService`` of a ``-dev`` server applies the fix."""
    start = (
        "from agent_support import http_on_port_zero\n"
        "from twisted.internet import reactor\n"
        "from wanfedtx.agent.agent import Agent\n"
        "from wanfedtx.config import LoadOptions, load\n"
        "import tempfile\n"
        "rt = http_on_port_zero(load(LoadOptions(dev=True, flags={'node_name': 'm1',"
        " 'data_dir': tempfile.mkdtemp()})).runtime)\n"
        "Agent(rt, reactor).startService()\n"
    )
    out = _probe(start)
    assert out.split() == ["before", "False", "after", "True"], out
