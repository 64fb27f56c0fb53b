"""The raft bounds are configuration: ``limits.raft_max_entry_size``,
``limits.raft_partial_frame_budget`` and ``limits.raft_frame_timeout`` reach the RaftService and
its inbound handler through ``build_raft``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from wanfedtx.agent.server_port import build_raft
from wanfedtx.config import ConfigError, LoadOptions, load
from wanfedtx.config.sockaddr import IfAddr
from wanfedtx.raft.transport import RaftHandler
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.registry import HandlerRegistry

IFS = [IfAddr("lo", "127.0.0.1", 8, up=True, loopback=True),
       IfAddr("eth0", "10.5.0.2", 16, up=True, loopback=False, default_route=True)]


def _load(tmp_path: Path, text: str) -> Any:
    p = tmp_path / "c.hcl"
    p.write_text(text)
    return load(LoadOptions(config_files=[str(p)], flags={"data_dir": str(tmp_path / "d")},
                            interfaces=lambda: list(IFS), hostname=lambda: "h")).runtime


def test_defaults(tmp_path: Path) -> None:
    rt = _load(tmp_path, 'server = true\nbootstrap_expect = 1\n')
    assert rt.raft_max_entry_size == 4 * 1024 * 1024
    assert rt.raft_partial_frame_budget == 32 * 1024 * 1024
    assert rt.raft_frame_timeout == 10.0


def test_configured_values_reach_the_raft_handler(tmp_path: Path) -> None:
    rt = _load(tmp_path, 'server = true\nbootstrap_expect = 1\nlimits {\n'
               '  raft_max_entry_size = 1048576\n  raft_partial_frame_budget = 8388608\n'
               '  raft_frame_timeout = "3s"\n}\n')
    assert (rt.raft_max_entry_size, rt.raft_partial_frame_budget, rt.raft_frame_timeout) == (
        1048576, 8388608, 3.0)

    class Factory:
        def server_identity_required(self) -> bool:
            return False

    class Port:
        registry = HandlerRegistry()
        factory = Factory()

    svc = build_raft(rt, Clock(), object(), Port(), object())  # type: ignore[arg-type]
    h = Port.registry.for_type(RPCType.RAFT)
    assert isinstance(h, RaftHandler)
    assert h.max_frame == 1048576 + 64 * 1024
    assert h.budget.limit == 8388608 and h.frame_timeout == 3.0 and h.clock is not None
    assert svc.options.max_entry_bytes == 1048576


def test_non_positive_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="raft_max_entry_size must be a positive"):
        _load(tmp_path, 'limits {\n  raft_max_entry_size = 0\n}\n')
