"""Helpers for config tests: write config files, a fixed set of fake network interfaces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wanfedtx.config import LoadOptions, LoadResult, load
from wanfedtx.config.sockaddr import IfAddr

FAKE_IFS = [
    IfAddr("lo", "127.0.0.1", 8, up=True, loopback=True),
    IfAddr("lo", "::1", 128, up=True, loopback=True),
    IfAddr("eth0", "10.5.0.2", 16, up=True, loopback=False, default_route=True),
    IfAddr("eth0", "fe80::1", 64, up=True, loopback=False, default_route=True),
    IfAddr("eth1", "34.1.2.3", 24, up=True, loopback=False),
]


def fake_ifs() -> list[IfAddr]:
    return list(FAKE_IFS)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], str]:
    def _write(name: str, text: str) -> str:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return str(p)

    return _write


@pytest.fixture
def loadcfg(tmp_path: Path) -> Callable[..., LoadResult]:
    """load() with a data dir, fake interfaces and a fixed host name unless overridden."""

    def _load(*files: str, **kw: Any) -> LoadResult:
        flags = dict(kw.pop("flags", {}))
        if not kw.get("dev"):
            flags.setdefault("data_dir", str(tmp_path / "data"))
        kw.setdefault("interfaces", fake_ifs)
        kw.setdefault("hostname", lambda: "testhost")
        return load(LoadOptions(config_files=list(files), flags=flags, **kw))

    return _load
