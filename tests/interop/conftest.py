"""Fixtures for interop tests against Go memberlist/serf peers (helpers in gossip_gopeers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gossip_gopeers import GoPeer, build_peer


@pytest.fixture(scope="session")
def mlpeer_bin() -> Path:
    return build_peer("mlpeer")


@pytest.fixture(scope="session")
def serfpeer_bin() -> Path:
    return build_peer("serfpeer")


@pytest.fixture
def go_peers() -> Iterator[Callable[..., GoPeer]]:
    """Factory ``go_peers(binary, *args)``; every peer is killed at teardown."""
    started: list[GoPeer] = []

    def start(binary: Path, *args: str) -> GoPeer:
        p = GoPeer([str(binary), *args])
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
