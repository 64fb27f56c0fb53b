"""Every end-to-end test runs in a network namespace of its own (``netns_support``): they use
the demo's fixed loopback addresses and Consul's default ports, and two test runs may share the
machine. A test marked ``host_network`` (it needs the package index, say) stays outside and
isolates what it starts itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netns_support import private_loopback


@pytest.fixture(autouse=True)
def _private_loopback(request: pytest.FixtureRequest) -> Iterator[bool]:
    if request.node.get_closest_marker("host_network") is not None:
        yield False
        return
    with private_loopback() as isolated:
        yield isolated
