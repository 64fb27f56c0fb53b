"""Every end-to-end test runs in a network namespace of its own (``netns_support``): they use
the demo's fixed loopback addresses and Consul's default ports, and two test runs may share the
machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netns_support import private_loopback


@pytest.fixture(autouse=True)
def _private_loopback() -> Iterator[bool]:
    with private_loopback() as isolated:
        yield isolated
